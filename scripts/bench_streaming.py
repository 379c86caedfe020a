"""Streamed vs in-memory training data: peak memory against corpus size, and throughput.

    python scripts/bench_streaming.py                      # 1 GB and 4 GB corpora
    python scripts/bench_streaming.py --sizes-mb 64 256 --in-memory-mb 64   # a quick look

Generates text corpora (documents of Zipf-distributed words, one per line) under
--workdir, then trains the same byte-level language model on them with `seq2seq-train`
subprocesses, one thread each:

1. memory: a streamed run (`data.streaming=true`) of --steps steps on each corpus size,
   and an in-memory run on the --in-memory-mb corpus (stopped after --in-memory-timeout
   seconds, or at --in-memory-limit-gb resident, if it is still preparing); the peak
   resident memory of each process
   (`wait4`'s ru_maxrss). Target: the streamed peaks of the two sizes within 10%.
2. throughput: streamed and in-memory runs on the --throughput-mb corpus, alternated
   --repeats times; the training tokens/s each logged to TensorBoard after its first
   window (median of the runs). Target: streamed at least 0.9x in-memory.

Prints one line per run and the ratios, and writes them to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parent.parent
WORDS = 5000


def _line_pool(seed: int, count: int = 100_000) -> list[str]:
    """`count` documents of 5 to 200 words drawn from a Zipf distribution over a made-up
    vocabulary (about 60 MB)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = ["".join(rng.choice(letters, size=int(rng.integers(2, 9)))) for _ in range(WORDS)]
    weights = 1.0 / np.arange(1, WORDS + 1)
    lengths = rng.integers(5, 200, size=count)
    words = rng.choice(WORDS, size=int(lengths.sum()), p=weights / weights.sum())
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(vocabulary[w] for w in words[bounds[i] : bounds[i + 1]]) for i in range(count)]


def make_validation(path: Path, documents: int = 500) -> Path:
    """A held-out file of `documents` generated documents (another seed than the corpus)."""
    path.write_text("\n".join(_line_pool(seed=1, count=documents)) + "\n", encoding="utf-8")
    return path


def make_corpus(path: Path, megabytes: int, seed: int = 0) -> Path:
    """A text file of about `megabytes` MB, one document per line, drawn at random from a
    pool of 100,000 generated documents (a large corpus repeats them, in another order
    each time). Written once; kept for later runs."""
    if path.exists() and path.stat().st_size >= megabytes * 1_000_000:
        return path
    pool = _line_pool(seed)
    rng = np.random.default_rng(seed + 1)
    partial = path.with_suffix(".partial")
    written = 0
    with partial.open("w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:
            chunk = "\n".join(pool[i] for i in rng.integers(0, len(pool), size=20_000)) + "\n"
            out.write(chunk)
            written += len(chunk)
    partial.rename(path)
    return path


def train(
    run_dir: Path,
    corpus: Path,
    validation: Path,
    *,
    streaming: bool,
    steps: int,
    timeout: float,
    cache: Path,
    memory_limit_gb: float = 18.0,
) -> dict[str, float | str]:
    """One training subprocess into a fresh `run_dir`; its peak RSS (GB), wall time, and
    how it ended (stopped after `timeout` seconds, or when its resident memory passes
    `memory_limit_gb`)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "seq2seq.cli.train",
        "task=language_modeling",
        "tokenizer=byte",
        "model=tiny",
        "model.max_len=256",
        "data.path=text",
        f"data.data_files.train={corpus}",
        f"data.data_files.validation={validation}",
        "data.splits.test=null",
        f"data.streaming={str(streaming).lower()}",
        "data.block_size=128",
        "data.max_tokens=4096",
        "trainer.metrics=[]",
        "trainer.monitor=loss",
        "trainer.sampled_documents=0",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        "trainer.log_every=10",
        "trainer.threads=1",
        "trainer.progress=log",
        f"tokenizer.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    started = time.perf_counter()
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        ended = "finished"
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            over = _resident_gb(process.pid) > memory_limit_gb
            if over or time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                ended = (
                    f"stopped at {memory_limit_gb:g} GB resident"
                    if over
                    else f"stopped after {timeout:.0f} s"
                )
                break
            time.sleep(0.5)
    if ended == "finished" and os.waitstatus_to_exitcode(status) != 0:
        ended = f"failed ({os.waitstatus_to_exitcode(status)}; see {run_dir}.log)"
    return {
        "peak_rss_gb": usage.ru_maxrss / 1024**2,  # KiB on Linux
        "seconds": time.perf_counter() - started,
        "ended": ended,
    }


def _resident_gb(pid: int) -> float:
    """The process's resident memory now, from /proc (0 once it has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def tokens_per_second(run_dir: Path) -> float:
    """Training tokens/s over the run after its first two logged windows: the harmonic
    mean of the logged rates, which is total tokens over total time when every window
    trains the same tokens (full packed blocks), so a window that waited for the stream
    counts with its whole wait."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    values = [event.value for event in events.Scalars("train/tokens_per_sec")]
    return statistics.harmonic_mean(values[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--in-memory-mb", type=int, default=1000)
    parser.add_argument("--in-memory-timeout", type=float, default=1800.0)
    parser.add_argument("--in-memory-limit-gb", type=float, default=18.0)
    parser.add_argument("--throughput-mb", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--parts", nargs="+", choices=["memory", "throughput"], default=["memory", "throughput"]
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "bench_streaming")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_streaming.json")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    validation = make_validation(work / "validation.txt")
    results: dict[str, object] = {"steps": args.steps}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if "memory" in args.parts:
        results.update(_memory(args, work, validation, cache))
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if "throughput" in args.parts:
        results["throughput"] = _throughput(args, work, validation, cache)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def _memory(
    args: argparse.Namespace, work: Path, validation: Path, cache: Path
) -> dict[str, object]:
    memory = {}
    for size in args.sizes_mb:
        corpus = make_corpus(work / f"corpus_{size}mb.txt", size)
        run = train(
            work / f"stream_{size}mb",
            corpus,
            validation,
            streaming=True,
            steps=args.steps,
            timeout=3600,
            cache=cache,
        )
        memory[f"streamed_{size}mb"] = run
        print(f"streamed, {size} MB corpus: peak {run['peak_rss_gb']:.2f} GB, {run['ended']}")
    corpus = make_corpus(work / f"corpus_{args.in_memory_mb}mb.txt", args.in_memory_mb)
    run = train(
        work / f"memory_{args.in_memory_mb}mb",
        corpus,
        validation,
        streaming=False,
        steps=args.steps,
        timeout=args.in_memory_timeout,
        cache=cache,
        memory_limit_gb=args.in_memory_limit_gb,
    )
    memory[f"in_memory_{args.in_memory_mb}mb"] = run
    print(
        f"in memory, {args.in_memory_mb} MB corpus: peak {run['peak_rss_gb']:.2f} GB, "
        f"{run['ended']} in {run['seconds']:.0f} s"
    )
    peaks = [memory[f"streamed_{size}mb"]["peak_rss_gb"] for size in args.sizes_mb]
    spread = max(peaks) / min(peaks) - 1  # type: ignore[operator]
    print(f"streamed peaks differ by {100 * spread:.1f}% (target < 10%)")
    return {"memory": memory, "streamed_peak_spread": spread}


def _throughput(
    args: argparse.Namespace, work: Path, validation: Path, cache: Path
) -> dict[str, object]:
    corpus = make_corpus(work / f"corpus_{args.throughput_mb}mb.txt", args.throughput_mb)
    speeds: dict[str, list[float]] = {"streamed": [], "in_memory": []}
    peaks: dict[str, list[float]] = {"streamed": [], "in_memory": []}
    for repeat in range(args.repeats):
        for kind in ("streamed", "in_memory"):
            run_dir = work / f"throughput_{kind}_{repeat}"
            run = train(
                run_dir,
                corpus,
                validation,
                streaming=kind == "streamed",
                steps=args.steps,
                timeout=3600,
                cache=cache,
            )
            speed = tokens_per_second(run_dir)
            speeds[kind].append(speed)
            peaks[kind].append(float(run["peak_rss_gb"]))
            print(
                f"throughput, {kind}, run {repeat}: {speed:,.0f} tokens/s, peak "
                f"{run['peak_rss_gb']:.2f} GB ({run['ended']})"
            )
    ratio = statistics.median(speeds["streamed"]) / statistics.median(speeds["in_memory"])
    print(f"streamed / in-memory tokens/s: {ratio:.3f} (target >= 0.9)")
    return {
        "tokens_per_sec": speeds,
        "peak_rss_gb": peaks,
        "ratio": ratio,
        "corpus_mb": args.throughput_mb,
    }


if __name__ == "__main__":
    main()
