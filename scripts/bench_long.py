"""Long contexts: whole training steps and decoding of one decoder-only LM, softmax against
the causal linear kinds, in the same process.

Model: a byte-level decoder-only LM built by `build_model` (default d_model 256, 8 heads of
width 32, d_ff 1024, 4 layers, vocabulary 260, dropout 0.1, pre-LayerNorm, sinusoidal
positions), the same for every kind but its decoder self-attention:
  `softmax`              SDPA with `is_causal`: no padding mask, as the language_modeling
                         task trains (its padding is on the right, unseen by causal rows);
  `softmax/masked`       SDPA given an all-true padding mask: the explicit (B, 1, L, L)
                         mask SDPA then needs (what the task passed before 2026-12-02);
  `causal_linear/favor`  FAVOR+ features (m = Dh ln Dh), `model.linear.backend=auto`
                         (Triton kernels on CUDA, the torch backend elsewhere);
  `causal_linear/elu`    elu + 1 features;
  `gated_linear`         a Mamba-2-style forget gate, short convolution, output gate;
  `delta`                the gated delta rule (Gated DeltaNet), the same block;
  `hybrid`               three `delta` layers then one `softmax` (`delta*3+softmax`);
  `sliding_window`       softmax over the last `model.window` = 256 keys.
With `--checkpointing`, every kind also runs with `trainer.activation_checkpointing`
(`<kind>+ckpt`): the memory it saves and the time it costs, against the same kind without.

Training: at each length L, batches of `--tokens` // L sequences of L tokens; one step is the
forward pass, label-smoothed cross-entropy, backward and AdamW, as the trainer runs it.
After `--warmup` untimed steps per kind, `--repeats` rounds each time one step of every kind
(so a change in the machine's load hits every kind alike); the median is kept; tokens/s is
L * batch / step time. The ratios against `softmax` at the same length mean more than the
milliseconds. The "overtakes softmax" line names the shortest measured length from which a
kind stays faster.

Peak memory of a step, above what was allocated before it (weights, AdamW state), measured
after all the timing, on fresh models, one warm step each:
- CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus
  `memory_allocated` before the step.
- CPU: PyTorch's CPU allocator keeps no statistics, so the process's resident memory is
  read, in a child process that runs after the timing (the same script, `--memory-pass`).
  glibc would keep freed blocks resident (its mmap threshold grows to the largest block
  freed, up to 32 MiB, and freed heap memory stays mapped), which hides what a step needs:
  with checkpointing at 4,096 tokens the resident peak fell 12% where the tensors autograd
  kept fell 90%. The child starts with `MALLOC_MMAP_THRESHOLD_=131072`, so glibc maps every
  block of 128 KiB or more on its own and unmaps it when freed (too slow for the timed
  steps: page faults). Before each measured step free memory is returned
  (`malloc_trim(0)`) and the kernel's high-water mark reset (`5` written to
  /proc/self/clear_refs, Linux 4.0+); the peak is VmHWM after the step minus VmRSS before
  it (/proc/self/status): every page the step held at once, tensors, allocator slack and
  the kernels' own buffers, at page granularity. Measured so, the bytes autograd saves for
  backward account for 95% of softmax's 4,096-token peak (306 of 322 MiB). Without glibc
  or a writable /proc/self/clear_refs the column is empty (nan).

Decoding: the whole model's `step` (every layer, the output projection) for one sequence
at positions `--decode-lengths`, each stepped there token by token from the start; then,
kind after kind, `--decode-repeats` rounds each time one step at every position, after an
untimed step of the same state (the model's weights in cache, as in decoding); the median
is kept, under `torch.inference_mode`.

Run:
    python scripts/bench_long.py --threads 1 --checkpointing     # CPU: 512 to 4,096 tokens
    python scripts/bench_long.py --device cuda --checkpointing \\
        --json outputs/bench_long_cuda.json                    # CUDA: 1,024 to 16,384 tokens

Targets (verdict lines), CPU at 4,096 tokens, same model: gated_linear at least 1.5x the
training tokens/s of softmax, delta at least 1.2x, causal_linear/elu at least 3x,
causal_linear/favor at least 1.5x, the Performer kinds at most half its peak memory; and
for decoding, gated_linear's and delta's step time at the longest position at most 1.2x
their time at the shortest (`--decode-lengths 64 4096`: constant time per token).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.config.model import (
    DecoderConfig,
    FeatureMap,
    LinearAttentionConfig,
    ModelConfig,
    Position,
)
from seq2seq.model import DecoderState, build_model
from seq2seq.model.language_model import DecoderLanguageModel
from seq2seq.training.loss import label_smoothed_cross_entropy

PAD = 0
SOFTMAX = "softmax"
MASKED = "softmax/masked"
KINDS: dict[str, tuple[str, str | None, bool]] = {
    # name: (decoder self-attention, feature map, pass the all-true padding mask)
    SOFTMAX: ("softmax", None, False),
    MASKED: ("softmax", None, True),
    "causal_linear/favor": ("causal_linear", "favor", False),
    "causal_linear/elu": ("causal_linear", "elu", False),
    "gated_linear": ("gated_linear", None, False),
    "delta": ("delta", None, False),
    "hybrid": ("delta*3+softmax", None, False),
    "sliding_window": ("sliding_window", None, False),
}
CHECKPOINTED = "+ckpt"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Target:
    """`kind` against softmax at `length` on `device`: at least `min_speedup`x the training
    tokens/s, or at most `max_memory`x the peak memory."""

    device: str
    length: int
    kind: str
    min_speedup: float | None = None
    max_memory: float | None = None

    def describe(self) -> str:
        what = (
            f"training tokens/s >= {self.min_speedup:g}x softmax's"
            if self.min_speedup is not None
            else f"peak memory <= {self.max_memory:g}x softmax's"
        )
        return f"{self.kind}: {what} at L={self.length} on {self.device}"


TARGETS = (
    Target("cpu", 4096, "gated_linear", min_speedup=1.5),
    Target("cpu", 4096, "delta", min_speedup=1.2),
    Target("cpu", 4096, "causal_linear/elu", min_speedup=3.0),
    Target("cpu", 4096, "causal_linear/favor", min_speedup=1.5),
    Target("cpu", 4096, "causal_linear/elu", max_memory=0.5),
    Target("cpu", 4096, "causal_linear/favor", max_memory=0.5),
)


@dataclass
class TrainResult:
    kind: str
    length: int
    batch: int
    step_ms: float
    tokens_per_s: float
    peak_bytes: float
    speedup_vs_softmax: float = float("nan")
    memory_vs_softmax: float = float("nan")
    time_vs_unchecked: float = float("nan")
    """`+ckpt` rows: step time over the same kind's without checkpointing."""
    memory_vs_unchecked: float = float("nan")


@dataclass
class DecodeResult:
    kind: str
    position: int
    ms_per_token: float
    speedup_vs_softmax: float = float("nan")


# --- memory --------------------------------------------------------------------------


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 (glibc only)
        return libc
    except (OSError, AttributeError, TypeError):
        return None


LIBC = _libc()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
"""The environment of the CPU memory pass: glibc maps blocks of 128 KiB or more apart."""


def cpu_peak_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        _status_kib("VmHWM")
        return LIBC is not None
    except OSError:
        return False


def peak_bytes(step: Callable[[], None], device: torch.device) -> float:
    """The peak memory of `step()` above what was allocated before it (see the docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    if not cpu_peak_supported():
        return float("nan")
    LIBC.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    step()
    return float((_status_kib("VmHWM") - before) * 1024)


# --- the model and its steps --------------------------------------------------------------


def model_config(kind: str, args: argparse.Namespace) -> ModelConfig:
    attention, feature_map, _ = KINDS[kind.removesuffix(CHECKPOINTED)]
    return ModelConfig(
        d_model=args.d_model,
        heads=args.heads,
        d_ff=args.d_ff,
        dropout=args.dropout,
        position=Position(args.position),
        max_len=max([*args.lengths, *args.decode_lengths]) + 2 * args.decode_repeats + 1,
        decoder=DecoderConfig(layers=args.layers, self_attention=attention),
        linear=LinearAttentionConfig(feature_map=FeatureMap(feature_map))
        if feature_map
        else LinearAttentionConfig(),
    )


def build(kind: str, args: argparse.Namespace, device: torch.device) -> DecoderLanguageModel:
    cfg = model_config(kind, args)
    torch.manual_seed(0)
    model = build_model(
        cfg, kind="decoder_lm", src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, pad_id=PAD
    )
    assert isinstance(model, DecoderLanguageModel)
    model.checkpoint_activations(kind.endswith(CHECKPOINTED))
    return model.to(device)


def use_tf32(device: torch.device, enabled: bool) -> None:
    """As `trainer.tf32`: on CUDA, float32 matmuls may use TF32 tensor cores."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if enabled else "highest")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainee:
    """One kind's model, optimizer and batch at one length: `step()` is a training step."""

    def __init__(
        self,
        model: DecoderLanguageModel,
        tokens: Tensor,
        *,
        masked: bool,
        precision: torch.dtype | None,
    ) -> None:
        self.model = model.train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.inputs, self.targets = tokens[:, :-1], tokens[:, 1:]
        self.mask = torch.ones_like(self.inputs, dtype=torch.bool) if masked else None
        self.precision = precision

    def step(self) -> None:
        device = self.inputs.device
        autocast: Any = (
            torch.autocast(device.type, dtype=self.precision) if self.precision else nullcontext()
        )
        with autocast:
            logits = self.model(self.inputs, self.mask)
        sums = label_smoothed_cross_entropy(logits, self.targets, pad_id=PAD, smoothing=0.1)
        (sums.loss / sums.tokens).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def timed_ms(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def trainees(
    kinds: list[str], length: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Trainee]:
    """Every kind's model at `length`, on the same batch of `--tokens` // L sequences."""
    batch = max(1, args.tokens // length)
    generator = torch.Generator().manual_seed(length)
    tokens = torch.randint(4, args.vocab, (batch, length + 1), generator=generator).to(device)
    return {
        kind: Trainee(
            build(kind, args, device),
            tokens,
            masked=KINDS[kind.removesuffix(CHECKPOINTED)][2],
            precision=PRECISIONS[args.precision],
        )
        for kind in kinds
    }


def train_lengths(
    kinds: list[str], args: argparse.Namespace, device: torch.device
) -> list[TrainResult]:
    """Step times at every length (the peak memory comes later: `measure_memory`)."""
    results: list[TrainResult] = []
    for length in args.lengths:
        batch = max(1, args.tokens // length)
        models = trainees(kinds, length, args, device)
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for trainee in models.values():
            for _ in range(args.warmup):
                trainee.step()
        for _ in range(args.repeats):
            for kind, trainee in models.items():
                times[kind].append(timed_ms(trainee.step, device))
        for kind in kinds:
            ms = statistics.median(times[kind])
            tokens_per_s = batch * length / ms * 1000.0
            results.append(TrainResult(kind, length, batch, ms, tokens_per_s, float("nan")))
            print(f"done train {kind} L={length} B={batch}: {ms:.0f} ms", flush=True)
        del models
    return results


def memory_pass(
    kinds: list[str], args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Peak step memory of every kind at every length, keyed `kind@length`, each on a fresh
    model after one warm step (AdamW's state then exists)."""
    peaks = {}
    for length in args.lengths:
        for kind in kinds:
            (trainee,) = trainees([kind], length, args, device).values()
            trainee.step()
            peaks[f"{kind}@{length}"] = peak_bytes(trainee.step, device)
            del trainee
        print(f"done memory L={length}", flush=True)
    return peaks


def measure_memory(
    results: list[TrainResult],
    kinds: list[str],
    args: argparse.Namespace,
    device: torch.device,
    argv: list[str],
) -> None:
    """Every row's peak step memory: in this process on CUDA, in a child process with
    glibc's fixed mmap threshold on the CPU (see the docstring)."""
    if device.type == "cuda":
        peaks = memory_pass(kinds, args, device)
    else:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "peaks.json"
            subprocess.run(
                [sys.executable, __file__, *argv, "--memory-pass", str(out)],
                env={**os.environ, **MMAP_THRESHOLD},
                check=True,
            )
            peaks = json.loads(out.read_text())
    for row in results:
        row.peak_bytes = peaks[f"{row.kind}@{row.length}"]


def compare(results: list[TrainResult]) -> None:
    """Fill in every row's ratios to softmax and, `+ckpt` rows, to the same kind without."""
    by_key = {(r.kind, r.length): r for r in results}
    for r in results:
        softmax = by_key.get((SOFTMAX, r.length))
        if softmax is not None:
            r.speedup_vs_softmax = r.tokens_per_s / softmax.tokens_per_s
            r.memory_vs_softmax = r.peak_bytes / softmax.peak_bytes
        unchecked = by_key.get((r.kind.removesuffix(CHECKPOINTED), r.length))
        if r.kind.endswith(CHECKPOINTED) and unchecked is not None:
            r.time_vs_unchecked = r.step_ms / unchecked.step_ms
            r.memory_vs_unchecked = r.peak_bytes / unchecked.peak_bytes


def decode_times(
    model: DecoderLanguageModel,
    tokens: torch.Tensor,
    positions: list[int],
    repeats: int,
    device: torch.device,
) -> dict[int, list[float]]:
    """Milliseconds of `repeats` timed steps of `model` at each of `positions` (increasing)."""
    rows = torch.zeros(1, dtype=torch.long, device=device)
    state = model.init_state()
    states: dict[int, DecoderState] = {}
    for position in positions:
        while state.position < position:
            _, state = model.step(tokens[:, state.position], state)
        # A state is consumed by its step (a KV cache is written in place): a copy.
        states[position] = state.reorder(rows)

    def step(position: int) -> None:
        state = states[position]
        _, states[position] = model.step(tokens[:, state.position], state)

    times: dict[int, list[float]] = {position: [] for position in positions}
    for _ in range(repeats):
        for position in positions:
            step(position)  # untimed: the weights in cache, as when decoding goes on
            times[position].append(timed_ms(partial(step, position), device))
    return times


def decode_positions(
    kinds: list[str], args: argparse.Namespace, device: torch.device
) -> list[DecodeResult]:
    """Per-token time of the whole model's `step` at each position of `--decode-lengths`.

    One kind after the other: its state is stepped to each position from the start, one
    state through the positions in increasing order, a copy kept at each; then
    `--decode-repeats` rounds step every position twice and time the second step, so a
    change in the machine's load hits all positions alike and every timed step finds the
    weights in cache. (Rounds over all kinds at once slowed a kind's first position after
    another kind's by up to 1.9x.)"""
    positions = sorted(args.decode_lengths)
    total = positions[-1] + 2 * args.decode_repeats + 1
    tokens = torch.randint(4, args.vocab, (1, total), generator=torch.Generator().manual_seed(1))
    tokens = tokens.to(device)
    results = []
    with torch.inference_mode():
        for kind in kinds:
            model = build(kind, args, device).eval()
            times = decode_times(model, tokens, positions, args.decode_repeats, device)
            results += [DecodeResult(kind, p, statistics.median(times[p])) for p in positions]
    softmax = {r.position: r.ms_per_token for r in results if r.kind == SOFTMAX}
    for r in results:
        if r.position in softmax:
            r.speedup_vs_softmax = softmax[r.position] / r.ms_per_token
    return results


# --- report --------------------------------------------------------------------------------


def overtakes(results: list[TrainResult], kind: str) -> str:
    """The shortest measured length from which `kind` trains faster than softmax."""
    rows = sorted((r for r in results if r.kind == kind), key=lambda r: r.length)
    faster = [r.speedup_vs_softmax > 1.0 for r in rows]
    if not rows or not faster[-1]:
        return "not within the measured lengths"
    first = len(faster)
    while first > 0 and faster[first - 1]:
        first -= 1
    if first == 0:
        return f"at or below L={rows[0].length} (faster at every measured length)"
    return f"between L={rows[first - 1].length} and L={rows[first].length}"


def target_value(results: list[TrainResult], target: Target) -> float | None:
    found = {r.kind: r for r in results if r.length == target.length}
    if target.kind not in found or SOFTMAX not in found:
        return None
    row = found[target.kind]
    return row.speedup_vs_softmax if target.min_speedup is not None else row.memory_vs_softmax


def target_met(target: Target, value: float | None) -> bool | None:
    if value is None or value != value:  # not run, or no memory figure
        return None
    if target.min_speedup is not None:
        return value >= target.min_speedup
    assert target.max_memory is not None
    return value <= target.max_memory


def train_table(results: list[TrainResult]) -> str:
    header = (
        f"{'kind':<26} {'L':>6} {'B':>3} {'step ms':>9} {'tokens/s':>9} {'x softmax':>9} "
        f"{'peak MiB':>9} {'mem/softmax':>11} {'ckpt time':>9} {'ckpt mem':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:<26} {r.length:>6} {r.batch:>3} {r.step_ms:>9.0f} {r.tokens_per_s:>9.0f} "
            f"{r.speedup_vs_softmax:>9.2f} {r.peak_bytes / 2**20:>9.1f} "
            f"{r.memory_vs_softmax:>11.2f} {r.time_vs_unchecked:>9.2f} "
            f"{r.memory_vs_unchecked:>9.2f}"
        )
    return "\n".join(lines)


def decode_table(results: list[DecodeResult]) -> str:
    header = f"{'kind':<26} {'position':>8} {'ms/token':>9} {'x softmax':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:<26} {r.position:>8} {r.ms_per_token:>9.3f} {r.speedup_vs_softmax:>9.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--lengths", type=int, nargs="+", help="default 512 1024 2048 4096 (cuda: to 16384)"
    )
    parser.add_argument(
        "--tokens", type=int, help="tokens per training batch (default 4096; cuda 65536)"
    )
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument(
        "--checkpointing",
        action="store_true",
        help="also run every kind with activation checkpointing (<kind>+ckpt rows)",
    )
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=260, help="260: bytes and specials")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--position", choices=Position.names(), default="sinusoidal", help="model.position"
    )
    parser.add_argument(
        "--precision", choices=sorted(PRECISIONS), help="autocast (default fp32; cuda bf16)"
    )
    parser.add_argument(
        "--no-tf32", dest="tf32", action="store_false", help="keep CUDA float32 matmuls exact"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per kind")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median")
    parser.add_argument(
        "--decode-lengths",
        type=int,
        nargs="*",
        help="decoding positions (default: the training lengths); none skips decoding",
    )
    parser.add_argument("--decode-repeats", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench_long.json"))
    parser.add_argument("--memory-pass", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    args.lengths = args.lengths or (
        [1024, 2048, 4096, 8192, 16384] if gpu else [512, 1024, 2048, 4096]
    )
    args.tokens = args.tokens or (65536 if gpu else 4096)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    if args.decode_lengths is None:
        args.decode_lengths = list(args.lengths)
    if SOFTMAX not in args.kinds:
        args.kinds.insert(0, SOFTMAX)  # the reference of every ratio
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    use_tf32(device, args.tf32)
    kinds = list(args.kinds)
    if args.checkpointing:
        kinds += [kind + CHECKPOINTED for kind in args.kinds if kind != MASKED]
    if args.memory_pass is not None:  # the child of `measure_memory`
        args.memory_pass.write_text(json.dumps(memory_pass(kinds, args, device)))
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{started} device={args.device} ({name or platform.machine()}) torch={torch.__version__} "
        f"threads={torch.get_num_threads()} load={load:.2f} precision={args.precision} "
        f"d_model={args.d_model} heads={args.heads} d_ff={args.d_ff} layers={args.layers} "
        f"vocab={args.vocab} position={args.position} tokens/batch={args.tokens} "
        f"repeats={args.repeats} (median)",
        flush=True,
    )
    train = train_lengths(kinds, args, device)
    decode_kinds = [kind for kind in args.kinds if kind != MASKED]
    decode = decode_positions(decode_kinds, args, device) if args.decode_lengths else []
    measure_memory(train, kinds, args, device, argv)
    compare(train)

    print(train_table(train))
    if decode:
        print(decode_table(decode))
    linear = [kind for kind in args.kinds if kind not in (SOFTMAX, MASKED)]
    crossovers = {kind: overtakes(train, kind) for kind in linear}
    for kind, where in crossovers.items():
        print(f"{kind} overtakes softmax in training tokens/s: {where}")
    verdicts = {}
    for target in (t for t in TARGETS if t.device == device.type):
        value = target_value(train, target)
        met = target_met(target, value)
        verdicts[target.describe()] = {"met": met, "value": value}
        verdict = "not run" if met is None else f"{'MET' if met else 'NOT MET'} ({value:.2f}x)"
        print(f"target {target.describe()}: {verdict}")
    for kind in ("gated_linear", "delta"):
        rows = sorted((r for r in decode if r.kind == kind), key=lambda r: r.position)
        if len(rows) < 2:
            continue
        ratio = rows[-1].ms_per_token / rows[0].ms_per_token
        what = (
            f"{kind}: decoding step at position {rows[-1].position} <= 1.2x the step at "
            f"{rows[0].position}"
        )
        verdicts[what] = {"met": ratio <= 1.2, "value": ratio}
        print(f"target {what}: {'MET' if ratio <= 1.2 else 'NOT MET'} ({ratio:.2f}x)")
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the start {load:.2f}, at the end {load_after:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "started": started,
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [load, load_after],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train": [asdict(r) for r in train],
        "decode": [asdict(r) for r in decode],
        "overtakes_softmax": crossovers,
        "targets": verdicts,
    }
    args.json.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
