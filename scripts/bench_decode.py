"""Per-step decoding time against prefix length: KV cache, no cache, causal-linear recurrence.

Kinds, all on the same decoder-only model shape built by `build_model` (a decoder-only LM
isolates the self-attention cost; cross-attention costs the same for all three):
  `softmax_kv_cache`   softmax self-attention through `model.step` (keys and values cached);
  `softmax_reforward`  the same model without a cache: every step re-runs the full decoder
                       over the whole prefix and keeps the last position (the reference);
  `causal_linear`      causal-linear (FAVOR+) self-attention through `model.step`, whose
                       state is the (S, z) sums: constant work per token at any position.

Per-step time at prefix length L is the median of `--repeats` steps each timed alone,
feeding positions L+warmup on. Each length has its own state: the causal-linear one is
stepped there (one state through the lengths in increasing order), the KV cache at L is
built by repeating one step's keys and values L times (a step's cost does not depend on
them). Then rounds step every length once, `--warmup` untimed rounds first, so a change in
the machine's load hits all lengths alike. The re-forward kind times full
passes over L+1 tokens after `--warmup` untimed ones; from 1,024 tokens it times
`--long-repeats` passes after one warmup (it grows quadratically: 4,096 tokens take a
second or more per step on a CPU), and above `--reforward-max-len` it is skipped. Times are medians; tokens/s is batch / step time. All in
one process under `torch.inference_mode`, so the ratios mean more than the milliseconds.

Run:
    python scripts/bench_decode.py                            # CPU, L = 64 256 512 1024 4096
    python scripts/bench_decode.py --device cuda --lengths 64 1024 4096 16384 --batch 16
    python scripts/bench_decode.py --d-model 512 --layers 6 --json outputs/bench_decode.json

Targets checked at the end: causal_linear's step time at 4,096 within 1.2x of its time at
64, and the KV cache at least 5x faster than re-forward at 512 tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.config.model import DecoderConfig, ModelConfig
from seq2seq.model import DecoderState, build_model
from seq2seq.model.language_model import DecoderLanguageModel
from seq2seq.tokenizer.sentencepiece import PAD_ID

KV_CACHE = "softmax_kv_cache"
REFORWARD = "softmax_reforward"
CAUSAL_LINEAR = "causal_linear"
STEPPED = {KV_CACHE: "softmax", CAUSAL_LINEAR: "causal_linear"}
LONG_REFORWARD = 1024

FLAT_LENGTHS = (64, 4096)
FLAT_MAX_RATIO = 1.2
CACHE_LENGTH = 512
CACHE_MIN_SPEEDUP = 5.0


@dataclass
class Result:
    kind: str
    length: int
    ms_per_step: float
    tokens_per_sec: float
    timed_steps: int
    speedup_vs_reforward: float = float("nan")
    ratio_vs_shortest: float = float("nan")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def longest_position(args: argparse.Namespace) -> int:
    """Room for the longest prefix plus the warmup and timed steps after it."""
    return max(args.lengths) + args.warmup + args.repeats + 1


def build_decoder(
    kind: str, args: argparse.Namespace, device: torch.device
) -> DecoderLanguageModel:
    max_len = longest_position(args)
    cfg = ModelConfig(
        d_model=args.d_model,
        heads=args.heads,
        d_ff=4 * args.d_model,
        dropout=0.0,
        max_len=max_len,
        decoder=DecoderConfig(layers=args.layers, self_attention=kind),
    )
    model = build_model(
        cfg, kind="decoder_lm", src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, pad_id=PAD_ID
    )
    assert isinstance(model, DecoderLanguageModel)
    return model.to(device).eval()


def stepped_to(
    model: DecoderLanguageModel, tokens: Tensor, lengths: list[int]
) -> list[DecoderState]:
    """The states at each of `lengths` (increasing), by stepping one state through them."""
    state = model.init_state()
    states = []
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    for length in lengths:
        while state.position < length:
            _, state = model.step(tokens[:, state.position], state)
        # A state is consumed by its step (the KV cache is written in place): keep a copy.
        states.append(state.reorder(rows))
    return states


def stepped(
    kind: str, model: DecoderLanguageModel, tokens: Tensor, args: argparse.Namespace
) -> list[Result]:
    """Per-step times at each of `args.lengths` through `model.step`.

    tokens: (B, max_len) long, fed one column per step. Every length gets its own state
    (stepped there from the start); then
    `--warmup` and `--repeats` rounds each step every length once, so a change in the
    machine's load over the run hits all lengths alike instead of skewing the ratios.
    """
    device = tokens.device
    lengths = sorted(args.lengths)
    states = stepped_to(model, tokens, lengths)
    times: list[list[float]] = [[] for _ in lengths]

    def step(i: int) -> None:
        _, states[i] = model.step(tokens[:, states[i].position], states[i])

    for round_ in range(args.warmup + args.repeats):
        for i in range(len(lengths)):
            ms = timed_ms(partial(step, i), device)
            if round_ >= args.warmup:
                times[i].append(ms)
    results = []
    for length, samples in zip(lengths, times, strict=True):
        ms = statistics.median(samples)
        results.append(Result(kind, length, ms, tokens.shape[0] / ms * 1000.0, len(samples)))
        print(f"done {kind} L={length}: {ms:.3f} ms/step", flush=True)
    return results


def reforward(
    model: DecoderLanguageModel, tokens: Tensor, args: argparse.Namespace
) -> list[Result]:
    """A full pass over the L+1 tokens of the prefix per step, as a decoder without a cache."""
    device = tokens.device
    results = []
    for length in sorted(args.lengths):
        if length > args.reforward_max_len:
            print(f"skip {REFORWARD} L={length} (> --reforward-max-len)", flush=True)
            continue
        prefix = tokens[:, : length + 1]
        repeats = args.long_repeats if length >= LONG_REFORWARD else args.repeats

        def step(prefix: Tensor = prefix) -> None:
            model(prefix, None)

        for _ in range(1 if length >= LONG_REFORWARD else args.warmup):
            step()
        ms = statistics.median(timed_ms(step, device) for _ in range(repeats))
        results.append(Result(REFORWARD, length, ms, tokens.shape[0] / ms * 1000.0, repeats))
        print(f"done {REFORWARD} L={length}: {ms:.3f} ms/step", flush=True)
    return results


def run(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    max_len = longest_position(args)
    tokens = torch.randint(4, args.vocab, (args.batch, max_len), generator=generator).to(device)
    results: list[Result] = []
    with torch.inference_mode():
        for kind, attention in STEPPED.items():
            torch.manual_seed(0)
            results += stepped(kind, build_decoder(attention, args, device), tokens, args)
        torch.manual_seed(0)
        results += reforward(build_decoder("softmax", args, device), tokens, args)
    reference = {r.length: r.ms_per_step for r in results if r.kind == REFORWARD}
    shortest: dict[str, float] = {}
    for r in sorted(results, key=lambda r: r.length):
        shortest.setdefault(r.kind, r.ms_per_step)
        r.ratio_vs_shortest = r.ms_per_step / shortest[r.kind]
        if r.length in reference:
            r.speedup_vs_reforward = reference[r.length] / r.ms_per_step
    order = [KV_CACHE, REFORWARD, CAUSAL_LINEAR]
    return sorted(results, key=lambda r: (order.index(r.kind), r.length))


def find(results: list[Result], kind: str, length: int) -> Result | None:
    return next((r for r in results if r.kind == kind and r.length == length), None)


def targets(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Each target's measured value and verdict (None where a length was not run)."""
    short, long = (find(results, CAUSAL_LINEAR, length) for length in FLAT_LENGTHS)
    flat = None if short is None or long is None else long.ms_per_step / short.ms_per_step
    cached, uncached = find(results, KV_CACHE, CACHE_LENGTH), find(results, REFORWARD, CACHE_LENGTH)
    speedup = (
        None if cached is None or uncached is None else uncached.ms_per_step / cached.ms_per_step
    )
    return {
        f"{CAUSAL_LINEAR} step at L={FLAT_LENGTHS[1]} within {FLAT_MAX_RATIO}x of L={FLAT_LENGTHS[0]}": {
            "value": flat,
            "met": None if flat is None else flat <= FLAT_MAX_RATIO,
        },
        f"{KV_CACHE} >= {CACHE_MIN_SPEEDUP:g}x faster than {REFORWARD} at L={CACHE_LENGTH}": {
            "value": speedup,
            "met": None if speedup is None else speedup >= CACHE_MIN_SPEEDUP,
        },
    }


def table(results: list[Result]) -> str:
    header = (
        f"{'kind':<18} {'L':>6} {'ms/step':>10} {'tokens/s':>11} {'steps':>6} "
        f"{'x vs reforward':>15} {'t / t(L min)':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:<18} {r.length:>6} {r.ms_per_step:>10.3f} {r.tokens_per_sec:>11.1f} "
            f"{r.timed_steps:>6} {r.speedup_vs_reforward:>15.2f} {r.ratio_vs_shortest:>13.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 512, 1024, 4096])
    parser.add_argument("--batch", type=int, default=4, help="sequences decoded together")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps; the median is kept")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps or passes before timing"
    )
    parser.add_argument(
        "--long-repeats",
        type=int,
        default=3,
        help=f"timed re-forward passes from L={LONG_REFORWARD} on (each is slow)",
    )
    parser.add_argument(
        "--reforward-max-len",
        type=int,
        default=4096,
        help="skip re-forward above this prefix length",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: a decoding step's ops are too small to share, "
        "and on busy cores a second thread mostly waits)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if min(args.lengths) < 1 or args.repeats < 1 or args.long_repeats < 1 or args.warmup < 0:
        parser.error("--lengths and --repeats must be positive, --warmup non-negative")
    if args.d_model % args.heads:
        parser.error(f"--d-model {args.d_model} is not divisible by --heads {args.heads}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"device={args.device} batch={args.batch} d_model={args.d_model} heads={args.heads} "
        f"layers={args.layers} vocab={args.vocab} threads={torch.get_num_threads()} "
        f"repeats={args.repeats} (median; {args.long_repeats} for re-forward from "
        f"L={LONG_REFORWARD}) warmup={args.warmup}",
        flush=True,
    )
    results = run(args)
    print(table(results))
    verdicts = targets(results)
    for name, verdict in verdicts.items():
        met = verdict["met"]
        value = "" if verdict["value"] is None else f" ({verdict['value']:.2f}x)"
        print(
            f"target {name} on {args.device}: "
            f"{'not run' if met is None else ('MET' if met else 'NOT MET')}{value}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "results": [asdict(r) for r in results],
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
