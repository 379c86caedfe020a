"""Forward+backward time and memory of every attention kind, against SDPA in the same process.

Kinds: `sdpa_causal` (softmax through `F.scaled_dot_product_attention(is_causal=True)`, what
`softmax` runs and what a user would otherwise pick: the main baseline), `quadratic` (plain
PyTorch q k^T, causal mask, softmax, @ v, materialising the L x L matrix: the correctness
reference), and `linear` / `causal_linear` with the `favor` and `elu` feature maps through
the package's own modules:
- `<kind>/<map>`: the `torch` backend (the memory-lean chunked path), eager;
- `<kind>/<map>/autograd` (CPU): the same arithmetic with autograd saving the features, as
  the torch path ran before it recomputed them: the time the lean path is held to;
- `<kind>/<map>/triton` (CUDA): the fused Triton kernels;
- `causal_linear/<map>/compiled` (with `--compile`): the torch backend under
  `torch.compile` (causal only: each compilation takes tens of seconds);
- `fla_chunk/elu` (CUDA, where `fla` imports): flash-linear-attention's `chunk_linear_attn`
  on elu+1 features formed in PyTorch, as a comparison only.
All are timed in the same process, so the ratios mean more than the milliseconds.

Time: `--warmup` untimed runs, then the median of `--repeats` timed forward+backward passes.
Memory: on CPU, the bytes autograd saves for the backward pass (summed over distinct storages
through `torch.autograd.graph.saved_tensors_hooks`, the inputs q, k, v excluded); on CUDA, the
peak allocated memory of one pass above what was allocated before it.

Inputs are float32 on CPU and bfloat16 on CUDA (what bf16 autocast hands the attention;
`--dtype` overrides). The linear kinds compute in float32 whatever the input dtype; on CUDA
their float32 products may use TF32 tensor cores (`--no-tf32` turns that off), as in
training with `trainer.tf32=true`. `--tokens N` sets the batch to N // L per length.

Run:
    python scripts/bench_attention.py --lengths 1024 4096 --threads 1    # CPU
    python scripts/bench_attention.py --device cuda --lengths 4096 16384 --tokens 65536 \\
        --heads 8 --compile --json outputs/bench_attention_cuda.json

Targets checked at the end (verdict lines): on CPU at 4,096 tokens, causal_linear (torch
backend) saves at most 2x SDPA's bytes for backward, in at most 1.3x the time of its autograd
path; on CUDA at 16,384 tokens, causal_linear/favor/triton at least 3x faster than SDPA
causal and 1.3x faster than fla_chunk/elu, with peak memory at most 1.5x SDPA's.
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
    torch_backend,
)
from seq2seq.model.attention.base import float32_region

AttentionFn = Callable[[Tensor, Tensor, Tensor], Tensor]
REFERENCE = "quadratic"
SDPA = "sdpa_causal"
FLA = "fla_chunk/elu"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
REFERENCE_MAX_LENGTH_CUDA = 8192
"""The reference's L x L matrices at 64K tokens per batch outgrow their use beyond this."""


@dataclass(frozen=True)
class Target:
    """`kind` against `baseline` at `length` on `device`: at least `min_speedup`x as fast
    (below 1: at most 1/min_speedup times the time), and at most `max_memory`x its memory."""

    device: str
    length: int
    kind: str
    baseline: str
    min_speedup: float | None = None
    max_memory: float | None = None

    def describe(self) -> str:
        parts = []
        if self.min_speedup is not None:
            parts.append(
                f">= {self.min_speedup:g}x as fast as {self.baseline}"
                if self.min_speedup >= 1
                else f"<= {1 / self.min_speedup:.3g}x the time of {self.baseline}"
            )
        if self.max_memory is not None:
            parts.append(f"memory <= {self.max_memory:g}x {self.baseline}'s")
        return f"{self.kind}: {', '.join(parts)} at L={self.length} on {self.device}"


TARGETS = (
    *(
        Target("cpu", 4096, f"causal_linear/{name}", SDPA, max_memory=2.0)
        for name in ("favor", "elu")
    ),
    *(
        Target("cpu", 4096, f"causal_linear/{name}", f"causal_linear/{name}/autograd", 1 / 1.3)
        for name in ("favor", "elu")
    ),
    Target("cuda", 16384, "causal_linear/favor/triton", SDPA, 3.0, max_memory=1.5),
    Target("cuda", 16384, "causal_linear/favor/triton", FLA, 1.3),
)


def use_tf32(device: torch.device, enabled: bool) -> None:
    """As `trainer.tf32`: on CUDA, float32 matmuls may use TF32 tensor cores."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if enabled else "highest")


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


def autograd_path(features: FeatureMap, *, causal: bool, chunk_size: int) -> AttentionFn:
    """The torch backend's arithmetic differentiated by autograd, which saves the float32
    features `(B, H, L, m)`: how the torch path ran before it recomputed them."""

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        with float32_region(q.device):
            q_features, k_features = torch_backend.masked_features(
                features, q, k, None, all_keys=not causal
            )
            values = torch_backend.with_ones(v)
            if causal:
                products = torch_backend.causal_chunk_products(
                    q_features, k_features, values, min(chunk_size, q.shape[2])
                )
            else:
                products = q_features @ (k_features.transpose(-1, -2) @ values)
            return torch_backend.normalized(products).to(v.dtype)

    return attend


def fla_chunk_elu() -> AttentionFn | None:
    """flash-linear-attention's chunk kernel on elu+1 features, or None where it is absent."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except Exception as error:  # an absent or incompatible install: leave the row out
        print(f"{FLA}: not run ({type(error).__name__}: {error})", flush=True)
        return None

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # fla takes (B, L, H, Dh) and the features already formed.
        phi_q, phi_k = ((F.elu(x) + 1).transpose(1, 2) for x in (q, k))
        out, _ = chunk_linear_attn(phi_q, phi_k, v.transpose(1, 2), normalize=True)
        return out.transpose(1, 2)

    return attend


def kernels(
    head_dim: int, nb_features: int, chunk_size: int, device: torch.device, *, compile: bool
) -> dict[str, AttentionFn]:
    """Every kind to time, keyed by its table name; SDPA first."""
    fns: dict[str, AttentionFn] = {SDPA: sdpa_causal, REFERENCE: quadratic_causal}
    for map_name in ("favor", "elu"):
        for kind in ("linear", "causal_linear"):
            backends = ["torch", "triton"] if device.type == "cuda" else ["torch"]
            for backend in backends:
                features = feature_map(map_name, head_dim, nb_features)
                module = (
                    LinearAttention(features, backend=backend)
                    if kind == "linear"
                    else CausalLinearAttention(features, chunk_size=chunk_size, backend=backend)
                ).to(device)
                suffix = "" if backend == "torch" else f"/{backend}"
                fns[f"{kind}/{map_name}{suffix}"] = without_mask(module)
                if backend == "torch" and compile and kind == "causal_linear":
                    fns[f"{kind}/{map_name}/compiled"] = torch.compile(
                        without_mask(module), dynamic=False
                    )
            if device.type == "cpu":
                fns[f"{kind}/{map_name}/autograd"] = autograd_path(
                    feature_map(map_name, head_dim, nb_features).to(device),
                    causal=kind == "causal_linear",
                    chunk_size=chunk_size,
                )
    if device.type == "cuda":
        fla = fla_chunk_elu()
        if fla is not None:
            fns[FLA] = fla
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
    batch: int
    ms: float
    memory_bytes: int
    speedup_vs_sdpa: float = float("nan")
    memory_vs_sdpa: float = float("nan")
    speedup_vs_quadratic: float = float("nan")


def run(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    fns = kernels(args.head_dim, args.nb_features, args.chunk_size, device, compile=args.compile)
    results: list[Result] = []
    for length in args.lengths:
        batch = max(1, args.tokens // length) if args.tokens else args.batch
        qkv = inputs(batch, args.heads, length, args.head_dim, device, DTYPES[args.dtype])
        row = {}
        for kind, fn in fns.items():
            if kind == REFERENCE and device.type == "cuda" and length > REFERENCE_MAX_LENGTH_CUDA:
                continue
            try:
                ms = median_ms(fn, qkv, warmup=args.warmup, repeats=args.repeats, device=device)
                memory = (
                    peak_cuda_bytes(fn, qkv, device)
                    if device.type == "cuda"
                    else saved_bytes(fn, qkv)
                )
            except Exception as error:  # one failing kind must not lose the others' figures
                print(f"{kind} L={length}: failed ({type(error).__name__}: {error})", flush=True)
                continue
            row[kind] = Result(kind, length, batch, ms, memory)
        for result in row.values():
            if SDPA in row:
                result.speedup_vs_sdpa = row[SDPA].ms / result.ms
                result.memory_vs_sdpa = result.memory_bytes / max(row[SDPA].memory_bytes, 1)
            if REFERENCE in row:
                result.speedup_vs_quadratic = row[REFERENCE].ms / result.ms
        results.extend(row.values())
        print(f"done L={length} batch={batch}", flush=True)
    return results


def target_met(results: list[Result], target: Target) -> bool | None:
    """Whether `target` is met; None where its kind, baseline or length was not run."""
    found = {r.kind: r for r in results if r.length == target.length}
    if target.kind not in found or target.baseline not in found:
        return None
    kind, baseline = found[target.kind], found[target.baseline]
    fast = target.min_speedup is None or baseline.ms / kind.ms >= target.min_speedup
    lean = target.max_memory is None or (
        kind.memory_bytes <= target.max_memory * baseline.memory_bytes
    )
    return fast and lean


def table(results: list[Result], device: torch.device) -> str:
    memory_label = "peak MiB" if device.type == "cuda" else "saved MiB"
    header = (
        f"{'kind':<28} {'L':>6} {'B':>3} {'ms':>10} {'x vs sdpa':>10} {memory_label:>10} "
        f"{'mem/sdpa':>9} {'x vs quad':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.kind:<28} {r.length:>6} {r.batch:>3} {r.ms:>10.2f} {r.speedup_vs_sdpa:>10.2f} "
            f"{r.memory_bytes / 2**20:>10.2f} {r.memory_vs_sdpa:>9.3f} "
            f"{r.speedup_vs_quadratic:>10.2f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--tokens", type=int, default=None, help="tokens per batch: batch = tokens // L"
    )
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
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time causal_linear's torch backend under torch.compile",
    )
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
    versions = f"torch={torch.__version__}"
    if device.type == "cuda":
        import triton

        versions += f" triton={triton.__version__} cuda={torch.version.cuda}"
    print(
        f"device={name} {versions} dtype={args.dtype} compile={args.compile} "
        f"tf32={args.tf32 and device.type == 'cuda'} batch={args.batch} tokens={args.tokens} "
        f"heads={args.heads} head_dim={args.head_dim} nb_features={args.nb_features} "
        f"chunk={args.chunk_size} threads={torch.get_num_threads()} repeats={args.repeats} "
        f"(median) warmup={args.warmup}",
        flush=True,
    )
    results = run(args)
    print(table(results, device))
    verdicts = {}
    for target in (t for t in TARGETS if t.device == device.type):
        met = target_met(results, target)
        verdicts[target.describe()] = met
        verdict = "not run" if met is None else ("MET" if met else "NOT MET")
        print(f"target {target.describe()}: {verdict}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "threads": torch.get_num_threads(),
            "versions": versions,
            "results": [asdict(r) for r in results],
            "device": name,
            "targets": verdicts,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
