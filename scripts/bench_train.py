"""Training throughput of the Performer stack against torch.nn.Transformer of the same size.

Times full training steps (forward, label-smoothed loss, backward, AdamW) of a
base-size encoder-decoder (6+6 layers, d_model 512, 8 heads, d_ff 2048) with each
attention kind, and of `torch.nn.Transformer` with the same sizes, embeddings and output
projection, in the same process on the same batches. Prints tokens/s, the ratio to
nn.Transformer and, on a GPU, model FLOP utilisation against the device's bf16 peak;
writes JSON.

    python scripts/bench_train.py                      # CPU: a shorter sequence by default
    python scripts/bench_train.py --device cuda --precision bf16 --compile \\
        --seq-len 4096 --batch-tokens 65536            # the issue's GPU setting
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.config.model import DecoderConfig, EncoderConfig, LinearAttentionConfig, ModelConfig
from seq2seq.model import build_model
from seq2seq.training.loss import label_smoothed_cross_entropy
from seq2seq.training.precision import use_tf32

PAD = 0
KINDS: dict[str, tuple[str, str, str]] = {
    "softmax": ("softmax", "softmax", "softmax"),
    "causal_linear_decoder": ("softmax", "causal_linear", "softmax"),
    "performer": ("linear", "causal_linear", "linear"),
}
# Dense bf16 peaks (TFLOP/s) for MFU; unknown devices need --peak-tflops.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


class TorchTransformer(nn.Module):
    """nn.Transformer with token embeddings, sinusoidal-free learned positions and a tied
    output projection: the same parameter count as our model's softmax configuration."""

    def __init__(
        self, *, vocab: int, d_model: int, heads: int, d_ff: int, layers: int, max_len: int
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.positions = nn.Embedding(max_len, d_model)
        # nn.Transformer cannot pass enable_nested_tensor=False to its encoder and warns that
        # pre-norm layers rule the nested-tensor (inference-only) fast path out; nothing here
        # uses it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            self.transformer = nn.Transformer(
                d_model=d_model,
                nhead=heads,
                num_encoder_layers=layers,
                num_decoder_layers=layers,
                dim_feedforward=d_ff,
                dropout=0.1,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
        self.scale = math.sqrt(d_model)

    def forward(self, src: Tensor, src_mask: Tensor, tgt: Tensor, tgt_mask: Tensor) -> Tensor:
        def embed(tokens: Tensor) -> Tensor:
            positions = self.positions.weight[: tokens.shape[1]]
            return self.embedding(tokens) * self.scale + positions

        length = tgt.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=tgt.device).triu(1)
        hidden = self.transformer(
            embed(src),
            embed(tgt),
            tgt_mask=causal,
            tgt_is_causal=True,
            src_key_padding_mask=~src_mask,
            tgt_key_padding_mask=~tgt_mask,
            memory_key_padding_mask=~src_mask,
        )
        return hidden @ self.embedding.weight.T


def ours(kind: str, args: argparse.Namespace) -> nn.Module:
    encoder, decoder, cross = KINDS[kind]
    uses_linear = "linear" in encoder or "linear" in decoder
    cfg = ModelConfig(
        d_model=args.d_model,
        heads=args.heads,
        d_ff=args.d_ff,
        dropout=0.1,
        max_len=args.seq_len + 1,
        share_embeddings=True,  # one vocabulary, as in the reference
        encoder=EncoderConfig(layers=args.layers, self_attention=encoder),
        decoder=DecoderConfig(layers=args.layers, self_attention=decoder, cross_attention=cross),
        linear=LinearAttentionConfig(nb_features=args.nb_features)
        if uses_linear
        else LinearAttentionConfig(),
    )
    return build_model(cfg, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, pad_id=PAD)


def non_embedding_parameters(model: nn.Module) -> int:
    skip = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def flops_per_token(model: nn.Module, args: argparse.Namespace, kind: str) -> float:
    """6N for the weights (forward + backward), plus the attention products of the softmax
    layers (QK^T and AV: 2 * 2 * L * D per token per layer, times 3 for backward), with
    causal self-attention counted at half."""
    weights = 6.0 * non_embedding_parameters(model)
    encoder, decoder, cross = KINDS.get(kind, KINDS["softmax"])
    per_layer = 12.0 * args.seq_len * args.d_model
    attention = (
        args.layers
        * per_layer
        * ((encoder == "softmax") + 0.5 * (decoder == "softmax") + (cross == "softmax"))
    )
    return weights + attention


def make_batch(
    args: argparse.Namespace, device: torch.device, generator: torch.Generator
) -> tuple[Tensor, ...]:
    rows = max(1, args.batch_tokens // args.seq_len)
    src = torch.randint(4, args.vocab, (rows, args.seq_len), generator=generator)
    tgt = torch.randint(4, args.vocab, (rows, args.seq_len + 1), generator=generator)
    mask = torch.ones(rows, args.seq_len, dtype=torch.bool)
    return tuple(t.to(device) for t in (src, mask, tgt[:, :-1], mask.clone(), tgt[:, 1:]))


def time_steps(
    model: nn.Module, args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step_model: Callable[..., Tensor] = torch.compile(model) if args.compile else model
    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.precision]
    batch = make_batch(args, device, torch.Generator().manual_seed(0))
    src, src_mask, tgt_in, tgt_mask, tgt_out = batch
    tokens = int(tgt_mask.sum())

    def step() -> None:
        context: Any = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        with context:
            logits = step_model(src, src_mask, tgt_in, tgt_mask)
        sums = label_smoothed_cross_entropy(logits, tgt_out, pad_id=PAD, smoothing=0.1)
        (sums.loss / sums.tokens).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"step_s": seconds, "tokens_per_s": tokens / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--no-tf32", dest="tf32", action="store_false", help="keep CUDA float32 matmuls exact"
    )
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--nb-features", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=None, help="default 128 on CPU, 4096 on GPU")
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="default 2048 on CPU, 65536 on GPU"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--json", type=Path, default=Path("outputs/bench_train.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    args.seq_len = args.seq_len or (4096 if gpu else 128)
    args.batch_tokens = args.batch_tokens or (65536 if gpu else 2048)
    if args.threads:
        torch.set_num_threads(args.threads)
    use_tf32(device, args.tf32)  # as the trainer does (the linear kinds' float32 regions)
    peak = args.peak_tflops
    if gpu and peak is None:
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)

    torch.manual_seed(0)
    reference = TorchTransformer(
        vocab=args.vocab,
        d_model=args.d_model,
        heads=args.heads,
        d_ff=args.d_ff,
        layers=args.layers,
        max_len=args.seq_len + 1,
    )
    models: dict[str, nn.Module] = {"nn.Transformer": reference}
    models.update({kind: ours(kind, args) for kind in args.kinds})
    rows = []
    for name, model in models.items():
        figures = time_steps(model, args, device)
        flops = flops_per_token(model, args, name) * figures["tokens_per_s"]
        figures.update(
            parameters=float(sum(p.numel() for p in model.parameters())),
            tflops=flops / 1e12,
            mfu=flops / (peak * 1e12) if peak else float("nan"),
        )
        rows.append({"model": name, **figures})
        model.to("cpu")
    base = rows[0]["tokens_per_s"]
    print(
        f"device {device} precision {args.precision} compile {args.compile} "
        f"seq_len {args.seq_len} batch_tokens {args.batch_tokens} torch {torch.__version__} "
        f"tf32 {gpu and args.tf32}"
    )
    print(
        f"{'model':24} {'params':>10} {'step ms':>9} {'tokens/s':>10} {'x nn.Tr':>8} {'TFLOP/s':>8} {'MFU':>6}"
    )
    for row in rows:
        row["ratio_vs_nn_transformer"] = row["tokens_per_s"] / base
        print(
            f"{row['model']:24} {row['parameters'] / 1e6:9.1f}M {row['step_s'] * 1e3:9.1f} "
            f"{row['tokens_per_s']:10.0f} {row['ratio_vs_nn_transformer']:8.2f} "
            f"{row['tflops']:8.2f} {row['mfu']:6.1%}"
        )
    softmax = next((r for r in rows if r["model"] == "softmax"), None)
    if softmax is not None:
        met = softmax["ratio_vs_nn_transformer"] >= 1.0
        print(f"target softmax tokens/s >= 1.0x nn.Transformer: {'MET' if met else 'NOT MET'}")
    if gpu and softmax is not None and peak:
        print(f"target softmax MFU >= 35%: {'MET' if softmax['mfu'] >= 0.35 else 'NOT MET'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
