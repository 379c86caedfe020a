"""Soak test of interruption and resume: train a tiny model for N steps in a subprocess,
stopping it with SIGTERM again and again and resuming with `trainer.resume=auto` in the
same run dir, then check that nothing was lost or repeated.

Each launch runs `python -m seq2seq.cli.train experiment=toy_reverse model=tiny ...
trainer.resume=auto hydra.run.dir=<workdir>/run`. Once the launch's log shows a training
step, the soak counts steps (`--every-steps M`, with `--jitter`) or seconds
(`--every-seconds K`) and then sends the signal; the launch must finish its step, write a
checkpoint, say so and exit with status 128 + the signal number, and the next launch
must say it resumed from that checkpoint. When a launch ends with `stopped: max_steps`,
the soak checks:

- steps: the `train/loss` scalars of all the run's TensorBoard event files (one a launch)
  hold every logged step (1..N with `--log-every 1`, else 1 and the multiples) exactly once;
- log: the run's text log (`<run>/train.log`, appended by every launch) holds each
  logged step's line exactly once, and so does the output the soak captured;
- continuity: at each resume point, the loss change from the last step before the stop to
  the first logged step after it is no larger than `--jump-factor` times the largest
  step-to-step change among the `--window` logged steps on either side;
- checkpoints: every stop's checkpoint existed, loaded with `weights_only=True` and held
  the stop's step; at the end the run dir holds `step_<N>.pt`, `best.pt` and at most
  `trainer.keep_last` step files; metrics.json says `max_steps` at step N;
- reference (with `--reference`): an unbroken run with the same settings in another
  dir logs the same loss at every step (a resumed run must reproduce it).

It prints a summary and writes JSON (`--json`, default `<workdir>/soak.json`); the exit
status is 0 when every check passed.

    python scripts/soak.py                                   # 10,000 steps, SIGTERM every ~1,000
    python scripts/soak.py --steps 300 --every-steps 100 --jitter 0 --reference
    python scripts/soak.py --every-seconds 20 --signals SIGTERM,SIGINT
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import queue
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# A tiny model on the reverse task: a few milliseconds a step on one CPU thread.
BASE_OVERRIDES = (
    "experiment=toy_reverse",
    "model=tiny",
    "data.train_size=5000",
    "data.validation_size=64",
    "data.test_size=64",
    "data.max_tokens=512",
    "trainer.num_samples=2",
    "trainer.progress=log",
)
TRAIN_STEP_LINE = re.compile(r"\] - step (\d+) \| loss ")
STOP_LINE = re.compile(r"(SIG\w+): stopped after step (\d+); checkpoint (\S+);")
RESUMED_LINE = re.compile(r"resumed from (\S+) at step (\d+)")
LOSS_TAG = "train/loss"


@dataclass
class Launch:
    index: int
    command: list[str]
    returncode: int | None = None
    first_step: int | None = None
    last_step: int | None = None
    target_step: int | None = None
    signal: str | None = None
    signalled_after_step: int | None = None
    stop_message: dict[str, Any] | None = None
    resumed_from: dict[str, Any] | None = None
    checkpoint_ok: bool | None = None
    metrics: dict[str, Any] | None = None
    startup_s: float | None = None
    wall_s: float = 0.0
    timed_out: bool = False
    output: list[str] = field(default_factory=list)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10_000, help="trainer.max_steps N")
    parser.add_argument(
        "--every-steps", type=int, default=1000, help="signal after M steps of a launch"
    )
    parser.add_argument(
        "--every-seconds",
        type=float,
        default=None,
        help="signal K seconds after a launch's first step instead of counting steps",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.5,
        help="vary each launch's M (or K) uniformly by this fraction, so stops land "
        "anywhere, evaluation steps included",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    parser.add_argument(
        "--signals", default="SIGTERM", help="comma-separated signals to send in turn"
    )
    parser.add_argument("--log-every", type=int, default=1, help="trainer.log_every")
    parser.add_argument("--eval-every", type=int, default=500, help="trainer.eval_every")
    parser.add_argument("--keep-last", type=int, default=2, help="trainer.keep_last")
    parser.add_argument("--window", type=int, default=100, help="logged steps per side")
    parser.add_argument(
        "--jump-factor",
        type=float,
        default=1.5,
        help="a resume jump fails above this times the largest nearby step-to-step change",
    )
    parser.add_argument(
        "--reference", action="store_true", help="also run unbroken and compare every loss"
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument(
        "--launch-timeout", type=float, default=3600.0, help="seconds before a launch is killed"
    )
    parser.add_argument(
        "--max-launches", type=int, default=None, help="give up after this many launches"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="run dir, caches and JSON go here (default: outputs/soak/<time>)",
    )
    parser.add_argument("--json", type=Path, default=None, help="default <workdir>/soak.json")
    parser.add_argument("--quiet", action="store_true", help="print no per-launch lines")
    parser.add_argument("overrides", nargs="*", help="extra seq2seq-train overrides")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every_steps < 1 or args.log_every < 1 or args.eval_every < 1:
        parser.error("--steps, --every-steps, --log-every and --eval-every must be >= 1")
    if not 0 <= args.jitter < 1:
        parser.error("--jitter must be in [0, 1)")
    for name in args.signals.split(","):
        if name not in ("SIGTERM", "SIGINT"):
            parser.error(f"--signals: {name!r} is not SIGTERM or SIGINT")
    return args


def train_command(args: argparse.Namespace, run_dir: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "seq2seq.cli.train",
        *BASE_OVERRIDES,
        f"trainer.max_steps={args.steps}",
        # cosine/linear schedules need warmup < max_steps; a tenth, at most 200 steps.
        f"schedule.warmup_steps={min(200, args.steps // 10)}",
        f"trainer.log_every={args.log_every}",
        f"trainer.eval_every={args.eval_every}",
        f"trainer.keep_last={args.keep_last}",
        "trainer.resume=auto",
        f"hydra.run.dir={run_dir}",
        f"tokenizer.cache_dir={cache}",
        *args.overrides,
    ]


def child_env(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    threads = str(args.threads)
    env.update(
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        PYTHONUNBUFFERED="1",
        HF_DATASETS_CACHE=str(workdir / "hf-cache"),
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TQDM_DISABLE="1",
    )
    return env


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_launch(
    launch: Launch,
    *,
    env: dict[str, str],
    cwd: Path,
    signal_name: str | None,
    every_steps: int | None,
    every_seconds: float | None,
    final_step: int,
    timeout: float,
    echo: bool,
) -> None:
    """Run one launch; send `signal_name` after `every_steps` steps (or seconds) of it,
    never once `final_step` is logged (the handlers are gone by the final test pass)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        launch.command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True)
    reader.start()
    first_step_time: float | None = None
    while True:
        now = time.perf_counter()
        if now - start > timeout:
            launch.timed_out = True
            process.kill()
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            launch.output.append(line)
            if echo and (("] - step " in line and "validation" in line) or "WARNING" in line):
                print(f"    {line.rstrip()}", flush=True)
            step_match = TRAIN_STEP_LINE.search(line)
            if step_match:
                step = int(step_match.group(1))
                if launch.first_step is None:
                    launch.first_step, first_step_time = step, now
                    launch.startup_s = now - start
                    if every_steps is not None:
                        launch.target_step = step - 1 + every_steps
                launch.last_step = step
        if signal_name is None or launch.signal is not None or launch.first_step is None:
            continue
        if launch.last_step is not None and launch.last_step >= final_step:
            continue
        assert first_step_time is not None and launch.last_step is not None
        due = (
            launch.last_step >= launch.target_step
            if launch.target_step is not None
            else every_seconds is not None and now - first_step_time >= every_seconds
        )
        if due:
            process.send_signal(getattr(signal, signal_name))
            launch.signal, launch.signalled_after_step = signal_name, launch.last_step
    launch.returncode = process.wait()
    reader.join(timeout=5)
    launch.wall_s = time.perf_counter() - start
    output = "".join(launch.output)
    stop = STOP_LINE.search(output)
    if stop:
        launch.stop_message = {
            "signal": stop.group(1),
            "step": int(stop.group(2)),
            "checkpoint": stop.group(3),
            "names_resume": "trainer.resume=auto" in output[stop.end() : stop.end() + 200],
        }
    resumed = RESUMED_LINE.search(output)
    if resumed:
        launch.resumed_from = {"checkpoint": resumed.group(1), "step": int(resumed.group(2))}


def verify_checkpoint(path: Path, step: int) -> bool:
    """The checkpoint loads with weights_only=True and holds `step`."""
    from seq2seq.training.checkpoint import load_checkpoint

    try:
        checkpoint = load_checkpoint(path)
    except (OSError, ValueError):
        return False
    return int(checkpoint["trainer"]["step"]) == step


def read_losses(tensorboard: Path) -> list[tuple[str, int, float]]:
    """(event file, step, loss) of every `train/loss` scalar, file by file, in write order."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    points = []
    for events in sorted(tensorboard.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == LOSS_TAG:
                    points.append((events.name, int(event.step), float(value.simple_value)))
    return points


def expected_steps(steps: int, log_every: int) -> list[int]:
    return [s for s in range(1, steps + 1) if s == 1 or s % log_every == 0]


def count_check(name: str, seen: list[int], expected: list[int]) -> Check:
    counts = Counter(seen)
    missing = [s for s in expected if counts[s] == 0]
    repeated = sorted(s for s, n in counts.items() if n > 1)
    unexpected = sorted(set(counts) - set(expected))
    ok = not (missing or repeated or unexpected)
    detail = (
        f"{len(expected)} steps logged exactly once"
        if ok
        else f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} "
        f"({len(missing)}), repeated {repeated[:10]} ({len(repeated)}), "
        f"unexpected {unexpected[:10]} ({len(unexpected)})"
    )
    return Check(name, ok, detail)


def resume_jumps(
    losses: dict[int, float], stops: list[int], *, window: int, factor: float
) -> tuple[Check, list[dict[str, Any]]]:
    """Compare the loss change across each stop with the changes around it."""
    steps = sorted(losses)
    position = {s: i for i, s in enumerate(steps)}
    diffs = [abs(losses[b] - losses[a]) for a, b in itertools.pairwise(steps)]
    boundary = set()
    for stop in stops:
        # The last logged step at or before the stop; its diff to the next crosses it.
        before = [s for s in steps if s <= stop]
        if before and position[before[-1]] < len(diffs):
            boundary.add(position[before[-1]])
    rows = []
    for index in sorted(boundary):
        lo, hi = max(0, index - window), min(len(diffs), index + window + 1)
        normal = [diffs[i] for i in range(lo, hi) if i not in boundary]
        if not normal:
            continue
        largest, median = max(normal), statistics.median(normal)
        jump = diffs[index]
        rows.append(
            {
                "from_step": steps[index],
                "to_step": steps[index + 1],
                "jump": jump,
                "largest_nearby": largest,
                "median_nearby": median,
                "ratio_to_largest": jump / largest if largest > 0 else math.inf,
                "ratio_to_median": jump / median if median > 0 else math.inf,
                "ok": jump <= factor * largest,
            }
        )
    bad = [r for r in rows if not r["ok"]]
    worst = max((r["ratio_to_largest"] for r in rows), default=0.0)
    detail = (
        f"{len(rows)} resume points; largest jump / largest nearby change = {worst:.2f} "
        f"(limit {factor})"
    )
    if bad:
        detail += f"; too large at steps {[r['to_step'] for r in bad]}"
    return Check("continuity", not bad, detail), rows


def log_lines(text: str) -> list[int]:
    return [int(m.group(1)) for m in TRAIN_STEP_LINE.finditer(text)]


def soak(args: argparse.Namespace) -> dict[str, Any]:
    workdir = (args.workdir or Path("outputs/soak") / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir, cache = workdir / "run", workdir / "cache"
    env = child_env(args, workdir)
    rng = random.Random(args.seed)
    signals = args.signals.split(",")
    launches: list[Launch] = []
    checks: list[Check] = []
    started = time.perf_counter()
    echo = not args.quiet

    finished = False
    while not finished:
        if args.max_launches is not None and len(launches) >= args.max_launches:
            break
        index = len(launches)
        launch = Launch(index=index, command=train_command(args, run_dir, cache))
        scale = 1 + rng.uniform(-args.jitter, args.jitter)
        every_seconds = args.every_seconds * scale if args.every_seconds is not None else None
        every_steps = None if every_seconds is not None else max(1, round(args.every_steps * scale))
        sent = signals[index % len(signals)]
        # No signal once the target is past the end: the last launch finishes the run.
        done_so_far = (
            launches[-1].stop_message["step"] if launches and launches[-1].stop_message else 0
        )
        if every_steps is not None and done_so_far + every_steps >= args.steps:
            sent_signal: str | None = None
        else:
            sent_signal = sent
        run_launch(
            launch,
            env=env,
            cwd=workdir,
            signal_name=sent_signal,
            every_steps=every_steps,
            every_seconds=every_seconds,
            final_step=args.steps,
            timeout=args.launch_timeout,
            echo=echo,
        )
        launches.append(launch)
        metrics_file = run_dir / "metrics.json"
        launch.metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        stop = launch.stop_message
        if stop is not None:
            launch.checkpoint_ok = Path(stop["checkpoint"]).is_file() and verify_checkpoint(
                Path(stop["checkpoint"]), stop["step"]
            )
        if echo:
            print(
                f"launch {index}: steps {launch.first_step}..{launch.last_step}, "
                f"signal {launch.signal} after step {launch.signalled_after_step}, "
                f"exit {launch.returncode}, stopped "
                f"{(launch.metrics or {}).get('stopped')} at {(launch.metrics or {}).get('step')}, "
                f"startup {launch.startup_s or 0:.1f} s, wall {launch.wall_s:.1f} s",
                flush=True,
            )
        # A signalled launch exits 128 + the signal number (0 if it had already finished).
        allowed = {0} if launch.signal is None else {0, 128 + signal.Signals[launch.signal]}
        if launch.returncode not in allowed or launch.timed_out:
            tail = "".join(launch.output[-30:])
            checks.append(
                Check(f"launch {index} exit", False, f"exit {launch.returncode}:\n{tail}")
            )
            break
        finished = bool(launch.metrics and launch.metrics.get("stopped") == "max_steps")

    checks += launch_checks(launches, run_dir, args, finished)
    stops = [item.stop_message["step"] for item in launches if item.stop_message]
    points = read_losses(run_dir / "tensorboard") if (run_dir / "tensorboard").is_dir() else []
    expected = expected_steps(args.steps, args.log_every)
    checks.append(count_check("tensorboard steps", [s for _, s, _ in points], expected))
    log_file = run_dir / "train.log"
    if log_file.is_file():
        checks.append(count_check("log file steps", log_lines(log_file.read_text()), expected))
    else:
        checks.append(Check("log file steps", False, f"{log_file} is missing"))
    captured = "".join(line for launch in launches for line in launch.output)
    checks.append(count_check("captured output steps", log_lines(captured), expected))
    event_files = sorted({name for name, _, _ in points})
    checks.append(
        Check(
            "event files",
            len(event_files) == len(launches),
            f"{len(event_files)} event files with train/loss for {len(launches)} launches",
        )
    )
    losses = {step: loss for _, step, loss in points}
    jump_check, jumps = resume_jumps(losses, stops, window=args.window, factor=args.jump_factor)
    checks.append(jump_check)

    reference: dict[str, Any] | None = None
    if args.reference and finished:
        reference = run_reference(args, workdir, env, losses, echo=echo)
        checks.append(Check("reference", reference["ok"], reference["detail"]))

    wall = time.perf_counter() - started
    train_wall = sum(item.wall_s - (item.startup_s or 0) for item in launches)
    summary = {
        "workdir": str(workdir),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "finished": finished,
        "launches": len(launches),
        "interruptions": len(stops),
        "stop_steps": stops,
        "steps_logged": len(points),
        "final_metrics": launches[-1].metrics if launches else None,
        "wall_s": wall,
        "mean_startup_s": statistics.mean(item.startup_s for item in launches if item.startup_s)
        if any(item.startup_s for item in launches)
        else None,
        "steps_per_s": args.steps / train_wall if finished and train_wall > 0 else None,
        "resume_jumps": jumps,
        "reference": reference,
        "checks": [asdict(c) for c in checks],
        "ok": finished and all(c.ok for c in checks),
        "launch_details": [
            {k: v for k, v in asdict(item).items() if k not in ("output", "command")}
            for item in launches
        ],
    }
    return summary


def launch_checks(
    launches: list[Launch], run_dir: Path, args: argparse.Namespace, finished: bool
) -> list[Check]:
    checks = [Check("finished", finished, f"{len(launches)} launches")]
    problems = []
    for previous, launch in itertools.pairwise(launches):
        stop = previous.stop_message
        if stop is None:
            problems.append(f"launch {previous.index} stopped without the stop message")
            continue
        if not stop["names_resume"]:
            problems.append(f"launch {previous.index}'s stop message does not name trainer.resume")
        if not previous.checkpoint_ok:
            problems.append(f"launch {previous.index}'s checkpoint {stop['checkpoint']} was bad")
        if (previous.metrics or {}).get("stopped") != stop["signal"]:
            problems.append(f"launch {previous.index}'s metrics.json: {previous.metrics}")
        if launch.resumed_from != {"checkpoint": stop["checkpoint"], "step": stop["step"]}:
            problems.append(f"launch {launch.index} resumed from {launch.resumed_from}, not {stop}")
        if launch.first_step is not None and launch.first_step <= stop["step"]:
            problems.append(f"launch {launch.index} repeated step {launch.first_step}")
    for launch in launches:
        if launch.signal and not launch.stop_message and launch is not launches[-1]:
            problems.append(f"launch {launch.index} got {launch.signal} but did not stop")
    checks.append(
        Check(
            "stops and resumes",
            not problems,
            "; ".join(problems)
            or f"{sum(1 for item in launches if item.stop_message)} clean stops",
        )
    )
    if finished:
        directory = run_dir / "checkpoints"
        step_files = sorted(p.name for p in directory.glob("step_*.pt"))
        final = directory / f"step_{args.steps:08d}.pt"
        ok = (
            final.is_file()
            and (directory / "best.pt").is_file()
            and len(step_files) <= args.keep_last
            and verify_checkpoint(final, args.steps)
        )
        metrics = launches[-1].metrics or {}
        ok = ok and metrics.get("step") == args.steps
        checks.append(
            Check(
                "final checkpoints",
                ok,
                f"{step_files} + best.pt; metrics step {metrics.get('step')}",
            )
        )
    return checks


def run_reference(
    args: argparse.Namespace,
    workdir: Path,
    env: dict[str, str],
    losses: dict[int, float],
    *,
    echo: bool,
) -> dict[str, Any]:
    """An unbroken run with the same settings; the resumed losses must equal its losses."""
    run_dir = workdir / "reference"
    launch = Launch(index=-1, command=train_command(args, run_dir, workdir / "cache"))
    run_launch(
        launch,
        env=env,
        cwd=workdir,
        signal_name=None,
        every_steps=None,
        every_seconds=None,
        final_step=args.steps,
        timeout=args.launch_timeout,
        echo=False,
    )
    if launch.returncode != 0:
        return {"ok": False, "detail": f"the unbroken run exited {launch.returncode}"}
    unbroken = {step: loss for _, step, loss in read_losses(run_dir / "tensorboard")}
    common = sorted(set(unbroken) & set(losses))
    differences = [abs(unbroken[s] - losses[s]) for s in common]
    worst = max(differences, default=math.inf)
    worst_step = common[differences.index(worst)] if differences else None
    tolerance = 1e-5
    ok = set(unbroken) == set(losses) and worst <= tolerance * max(1.0, abs(unbroken[common[0]]))
    if echo:
        print(f"reference: {len(common)} steps compared, largest difference {worst:.3g}")
    return {
        "ok": ok,
        "steps_compared": len(common),
        "max_abs_difference": worst,
        "at_step": worst_step,
        "wall_s": launch.wall_s,
        "detail": f"{len(common)} steps, largest |loss - unbroken loss| {worst:.3g} "
        f"at step {worst_step} (tolerance {tolerance})",
    }


def print_summary(summary: dict[str, Any]) -> None:
    print()
    print(f"soak: {summary['workdir']}")
    print(
        f"  {summary['launches']} launches, {summary['interruptions']} interruptions "
        f"at steps {summary['stop_steps']}"
    )
    rate = summary["steps_per_s"]
    print(
        f"  wall {summary['wall_s']:.0f} s; startup {summary['mean_startup_s'] or 0:.1f} s a launch; "
        f"{rate or 0:.1f} steps/s while training"
    )
    metrics = summary["final_metrics"] or {}
    print(
        f"  final: stopped {metrics.get('stopped')} at step {metrics.get('step')}, "
        f"validation {metrics.get('final_validation')}"
    )
    width = max(len(c["name"]) for c in summary["checks"])
    for check in summary["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"  {mark} {check['name']:<{width}}  {check['detail']}")
    print(f"  => {'PASS' if summary['ok'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = soak(args)
    print_summary(summary)
    path = args.json or Path(summary["workdir"]) / "soak.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"  wrote {path}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
