"""seq2seq's Dropout against nn.Dropout on the CPU, alone and inside a training step.

Times forward + backward of each on activations of the G2P recipe's shape (3,600 tokens,
d_model 256 and d_ff 1024), then full training steps (forward, label-smoothed loss,
backward, AdamW) of the 7.4M-parameter G2P model with its Dropout modules, and of a copy
with nn.Dropout swapped in, alternating the two so both see the same machine load.
Prints milliseconds and the speedup; writes JSON.

    python scripts/bench_dropout.py
    python scripts/bench_dropout.py --precision bf16 --steps 10
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.config.model import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.model import build_model
from seq2seq.model.dropout import Dropout
from seq2seq.training.loss import label_smoothed_cross_entropy

PAD = 0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def median_ms(run: Callable[[], None], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def forward_backward(module: nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> None:
    module(x).backward(upstream)


def module_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for width in (args.d_model, args.d_ff):
        x = torch.randn(args.tokens, width, dtype=DTYPES[args.precision], requires_grad=True)
        upstream = torch.randn_like(x)
        timed = {
            name: median_ms(partial(forward_backward, module, x, upstream), args.repeats)
            for name, module in (("nn.Dropout", nn.Dropout(args.p)), ("ours", Dropout(args.p)))
        }
        rows.append({"what": f"dropout fwd+bwd ({args.tokens}, {width})", **timed})
    return rows


def with_torch_dropout(model: nn.Module) -> nn.Module:
    """A copy of `model` whose Dropout modules are nn.Dropout of the same p."""
    twin = copy.deepcopy(model)
    for module in list(twin.modules()):
        for name, child in module.named_children():
            if isinstance(child, Dropout):
                setattr(module, name, nn.Dropout(child.p))
    return twin


def step_row(args: argparse.Namespace) -> dict[str, Any]:
    cfg = ModelConfig(
        d_model=args.d_model,
        heads=4,
        d_ff=args.d_ff,
        dropout=args.p,
        max_len=64,
        encoder=EncoderConfig(layers=4),
        decoder=DecoderConfig(layers=4),
    )
    ours = build_model(cfg, src_vocab_size=32, tgt_vocab_size=48, pad_id=PAD).train()
    models = {"nn.Dropout": with_torch_dropout(ours), "ours": ours}
    parameters = sum(p.numel() for p in ours.parameters())
    generator = torch.Generator().manual_seed(0)
    rows = args.tokens // args.length
    src = torch.randint(4, 32, (rows, args.length), generator=generator)
    tgt = torch.randint(4, 48, (rows, args.length + 1), generator=generator)
    mask = torch.ones(rows, args.length, dtype=torch.bool)
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    dtype = None if args.precision == "fp32" else DTYPES[args.precision]

    def step(name: str) -> float:
        start = time.perf_counter()
        context: Any = torch.autocast("cpu", dtype=dtype) if dtype else nullcontext()
        with context:
            logits = models[name](src, mask, tgt[:, :-1], mask)
        sums = label_smoothed_cross_entropy(logits, tgt[:, 1:], pad_id=PAD, smoothing=0.1)
        (sums.loss / sums.tokens).backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for name in models:
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):
        for name in models:  # alternating, so both see the same load
            times[name].append(step(name))
    return {
        "what": f"training step, {parameters / 1e6:.1f}M parameters, {rows}x{args.length} tokens",
        **{name: statistics.median(t) * 1e3 for name, t in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--p", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=3600)
    parser.add_argument("--length", type=int, default=16, help="tokens per sequence")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=Path("outputs/bench_dropout.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [*module_rows(args)]
    if args.steps > 0:
        results.append(step_row(args))
    print(
        f"cpu precision {args.precision} threads {torch.get_num_threads()} torch {torch.__version__}"
    )
    print(f"{'what':<52} {'nn.Dropout ms':>14} {'ours ms':>9} {'speedup':>8}")
    for row in results:
        row["speedup"] = row["nn.Dropout"] / row["ours"]
        print(
            f"{row['what']:<52} {row['nn.Dropout']:>14.1f} {row['ours']:>9.1f} {row['speedup']:>7.2f}x"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
