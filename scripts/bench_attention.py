"""Forward+backward time and memory of every attention kind against a quadratic reference.

Kinds: `quadratic` (plain PyTorch: q k^T, causal mask, softmax, @ v, materialising the
L x L matrix: the reference), `sdpa_causal` (softmax through
`F.scaled_dot_product_attention(is_causal=True)`, what `softmax` runs), `linear` and
`causal_linear`, each with the `favor` and `elu` feature maps, through the package's own
modules. All are timed in the same process, so the ratios mean more than the milliseconds.

Time: `--warmup` untimed runs, then the median of `--repeats` timed forward+backward passes.
Memory: on CPU, the bytes autograd saves for the backward pass (summed over distinct storages
through `torch.autograd.graph.saved_tensors_hooks`, the inputs q, k, v excluded); on CUDA, the
peak allocated memory of one pass above what was allocated before it.

Inputs are float32 on CPU and bfloat16 on CUDA (what bf16 autocast hands the attention;
`--dtype` overrides). The linear kinds compute in float32 whatever the input dtype; on CUDA
their float32 matmuls may use TF32 tensor cores (`--no-tf32` turns that off), as in
training with `trainer.tf32=true`. `--compile` times every kind under `torch.compile`.

Run:
    python scripts/bench_attention.py                       # CPU, lengths 256 1024 4096
    python scripts/bench_attention.py --device cuda --lengths 4096 16384 --compile
    python scripts/bench_attention.py --json outputs/bench_attention.json

The targets checked at the end: on CPU, causal_linear at least 10x faster than the quadratic
masked reference at 4,096 tokens; on CUDA, causal_linear at least 3x faster than SDPA causal
at 16,384 tokens with peak memory at most 1.5x SDPA's.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention import (
    Attention,
    CausalLinearAttention,
    EluFeatureMap,
    FavorFeatureMap,
    FeatureMap,
    LinearAttention,
)
from seq2seq.training.trainer import use_tf32

AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
REFERENCE = "quadratic"
SDPA = "sdpa_causal"
TARGET_KIND = "causal_linear"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Target:
    """causal_linear against `baseline` at `length` on `device`: at least `min_speedup`x
    faster, and (if set) at most `max_memory`x the baseline's memory."""

    device: str
    length: int
    baseline: str
    min_speedup: float
    max_memory: float | None = None

    def describe(self) -> str:
        memory = f", memory <= {self.max_memory:g}x" if self.max_memory is not None else ""
        return (
            f">= {self.min_speedup:g}x faster than {self.baseline}{memory} "
            f"at L={self.length} on {self.device}"
        )


TARGETS = (
    Target("cpu", 4096, REFERENCE, 10.0),
    Target("cuda", 16384, SDPA, 3.0, max_memory=1.5),
)


def quadratic_causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The reference: `q, k, v: (B, H, L, Dh)`, an explicit L x L masked softmax."""
    length = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def sdpa_causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def feature_map(name: str, head_dim: int, nb_features: int) -> FeatureMap:
    if name == "favor":
        return FavorFeatureMap(head_dim, num_features=nb_features, seed=0, layer_id=0)
    return EluFeatureMap(head_dim)


def without_mask(attention: Attention) -> AttentionFn:
    return lambda q, k, v: attention(q, k, v, None)


def kernels(
    head_dim: int, nb_features: int, chunk_size: int, device: torch.device
) -> dict[str, AttentionFn]:
    """Every kind to time, keyed by its table name; the reference first."""
    fns: dict[str, AttentionFn] = {REFERENCE: quadratic_causal, SDPA: sdpa_causal}
    for map_name in ("favor", "elu"):
        linear = LinearAttention(feature_map(map_name, head_dim, nb_features)).to(device)
        causal = CausalLinearAttention(
            feature_map(map_name, head_dim, nb_features), chunk_size=chunk_size
        ).to(device)
        fns[f"linear/{map_name}"] = without_mask(linear)
        fns[f"causal_linear/{map_name}"] = without_mask(causal)
    return fns


def inputs(
    batch: int, heads: int, length: int, head_dim: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator(device=device).manual_seed(length)
    q, k, v = (
        torch.randn(batch, heads, length, head_dim, device=device, generator=generator)
        .to(dtype)
        .requires_grad_()
        for _ in range(3)
    )
    return q, k, v


def forward_backward(fn: AttentionFn, q: Tensor, k: Tensor, v: Tensor) -> None:
    out = fn(q, k, v)
    out.backward(torch.ones_like(out))
    for t in (q, k, v):
        t.grad = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: AttentionFn,
    qkv: tuple[Tensor, Tensor, Tensor],
    *,
    warmup: int,
    repeats: int,
    device: torch.device,
) -> float:
    for _ in range(warmup):
        forward_backward(fn, *qkv)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        forward_backward(fn, *qkv)
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def saved_bytes(fn: AttentionFn, qkv: tuple[Tensor, Tensor, Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward, inputs excluded."""
    exclude = {t.untyped_storage().data_ptr() for t in qkv}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn(*qkv)
    out.backward(torch.ones_like(out))
    for t in qkv:
        t.grad = None
    return sum(storages.values())


def peak_cuda_bytes(
    fn: AttentionFn, qkv: tuple[Tensor, Tensor, Tensor], device: torch.device
) -> int:
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    forward_backward(fn, *qkv)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


@dataclass
class Result:
    kind: str
    length: int
    ms: float
    memory_bytes: int
    speedup_vs_quadratic: float = float("nan")
    speedup_vs_sdpa: float = float("nan")
    memory_vs_quadratic: float = float("nan")
    memory_vs_sdpa: float = float("nan")


def run(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    fns = kernels(args.head_dim, args.nb_features, args.chunk_size, device)
    if args.compile:
        fns = {kind: torch.compile(fn) for kind, fn in fns.items()}
    results: list[Result] = []
    for length in args.lengths:
        qkv = inputs(args.batch, args.heads, length, args.head_dim, device, DTYPES[args.dtype])
        row = {}
        for kind, fn in fns.items():
            ms = median_ms(fn, qkv, warmup=args.warmup, repeats=args.repeats, device=device)
            memory = (
                peak_cuda_bytes(fn, qkv, device) if device.type == "cuda" else saved_bytes(fn, qkv)
            )
            row[kind] = Result(kind, length, ms, memory)
        for result in row.values():
            result.speedup_vs_quadratic = row[REFERENCE].ms / result.ms
            result.speedup_vs_sdpa = row[SDPA].ms / result.ms
            result.memory_vs_quadratic = result.memory_bytes / max(row[REFERENCE].memory_bytes, 1)
            result.memory_vs_sdpa = result.memory_bytes / max(row[SDPA].memory_bytes, 1)
        results.extend(row.values())
        print(f"done L={length}", flush=True)
    return results


def target_met(results: list[Result], target: Target) -> dict[str, bool | None]:
    """Per causal_linear feature map, whether `target` is met (None where its length was
    not run)."""
    verdicts: dict[str, bool | None] = {}
    for result in results:
        if result.kind.startswith(TARGET_KIND):
            verdicts.setdefault(result.kind, None)
            if result.length == target.length:
                speedup, memory = {
                    REFERENCE: (result.speedup_vs_quadratic, result.memory_vs_quadratic),
                    SDPA: (result.speedup_vs_sdpa, result.memory_vs_sdpa),
                }[target.baseline]
                verdicts[result.kind] = speedup >= target.min_speedup and (
                    target.max_memory is None or memory <= target.max_memory
                )
    return verdicts


def table(results: list[Result], device: torch.device) -> str:
    memory_label = "peak MiB" if device.type == "cuda" else "saved MiB"
    header = (
        f"{'kind':<22} {'L':>6} {'ms':>10} {'x vs quad':>10} {'x vs sdpa':>10} "
        f"{memory_label:>10} {'mem/quad':>9} {'mem/sdpa':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:<22} {r.length:>6} {r.ms:>10.2f} {r.speedup_vs_quadratic:>10.2f} "
            f"{r.speedup_vs_sdpa:>10.2f} {r.memory_bytes / 2**20:>10.2f} "
            f"{r.memory_vs_quadratic:>9.3f} {r.memory_vs_sdpa:>9.3f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument(
        "--nb-features",
        type=int,
        default=None,
        help="FAVOR+ features m (default int(Dh ln Dh), as model.linear.nb_features)",
    )
    parser.add_argument("--chunk-size", type=int, default=64, help="causal_linear chunk C")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="q, k, v dtype (default: fp32 on cpu, bf16 on cuda)",
    )
    parser.add_argument("--compile", action="store_true", help="time under torch.compile")
    parser.add_argument(
        "--no-tf32", dest="tf32", action="store_false", help="keep CUDA float32 matmuls exact"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.nb_features is None:
        args.nb_features = max(1, int(args.head_dim * math.log(args.head_dim)))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available")
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "fp32"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    use_tf32(device, args.tf32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} torch={torch.__version__} dtype={args.dtype} compile={args.compile} "
        f"tf32={args.tf32 and device.type == 'cuda'} batch={args.batch} heads={args.heads} "
        f"head_dim={args.head_dim} nb_features={args.nb_features} chunk={args.chunk_size} "
        f"threads={torch.get_num_threads()} repeats={args.repeats} (median) "
        f"warmup={args.warmup}",
        flush=True,
    )
    results = run(args)
    print(table(results, device))
    verdicts = {}
    for target in (t for t in TARGETS if t.device == device.type):
        verdicts[target.describe()] = met = target_met(results, target)
        for kind, ok in met.items():
            verdict = "not run" if ok is None else ("MET" if ok else "NOT MET")
            print(f"target {kind} {target.describe()}: {verdict}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "results": [asdict(r) for r in results],
            "device": name,
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
