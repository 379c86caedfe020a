"""Per-rank bytes of parameters, gradients and optimizer state: FSDP2 against DDP.

Starts `--ranks` CPU processes (gloo), and in each builds the same encoder-decoder, wraps it
as `trainer.strategy` does (`ddp`: DistributedDataParallel; `fsdp`:
`seq2seq.training.fsdp.shard`, fully_shard per layer and on the root), takes one AdamW step
(the project's optimizer groups) on a random batch, and counts the bytes each rank holds:
the local shard of every DTensor, the whole of every plain tensor. Prints a table per rank
and the ratio fsdp / ddp (1 / ranks is the target), and writes JSON. Memory is counted from
the tensors, not timed or sampled, so the figures are the same on any machine.

    python scripts/bench_fsdp_memory.py                 # 2 ranks, a base-size model
    python scripts/bench_fsdp_memory.py --ranks 4 --json outputs/bench_fsdp_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.config.model import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.config.training import OptimConfig
from seq2seq.model import build_model
from seq2seq.training.fsdp import local, shard
from seq2seq.training.loss import label_smoothed_cross_entropy
from seq2seq.training.optim import build_optimizer

PAD = 0
STRATEGIES = ("ddp", "fsdp")
PARTS = ("parameters", "gradients", "optimizer")


def tensor_bytes(tensors: list[Tensor]) -> int:
    """Bytes this rank holds of `tensors` (a DTensor's local shard)."""
    return sum(local(tensor).numel() * tensor.element_size() for tensor in tensors)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, Tensor)
    ]


def measure(strategy: str, args: argparse.Namespace) -> dict[str, int]:
    """One AdamW step under `strategy`; the bytes of each part this rank holds after it
    (the gradients before they are cleared)."""
    cfg = ModelConfig(
        d_model=args.d_model,
        heads=args.heads,
        d_ff=args.d_ff,
        dropout=0.0,
        max_len=args.seq_len + 1,
        share_embeddings=True,
        encoder=EncoderConfig(layers=args.layers),
        decoder=DecoderConfig(layers=args.layers),
    )
    model = build_model(cfg, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, pad_id=PAD)
    wrapped: nn.Module = (
        DistributedDataParallel(model, broadcast_buffers=False)
        if strategy == "ddp"
        else shard(model, param_dtype=None)
    )
    optimizer = build_optimizer(model, OptimConfig())
    generator = torch.Generator().manual_seed(dist.get_rank())
    src = torch.randint(4, args.vocab, (args.rows, args.seq_len), generator=generator)
    tgt = torch.randint(4, args.vocab, (args.rows, args.seq_len + 1), generator=generator)
    mask = torch.ones(args.rows, args.seq_len, dtype=torch.bool)
    logits = wrapped(src, mask, tgt[:, :-1], mask)
    sums = label_smoothed_cross_entropy(logits, tgt[:, 1:], pad_id=PAD, smoothing=0.1)
    (sums.loss / sums.tokens).backward()
    optimizer.step()
    parameters = list(model.parameters())
    figures = {
        "parameters": tensor_bytes(parameters),
        "gradients": tensor_bytes([p.grad for p in parameters if p.grad is not None]),
        "optimizer": tensor_bytes(optimizer_tensors(optimizer)),
        "total_parameters": sum(p.numel() for p in parameters),
    }
    optimizer.zero_grad(set_to_none=True)
    return figures


def worker(rank: int, world_size: int, port: int, args: argparse.Namespace) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        results = {strategy: measure(strategy, args) for strategy in STRATEGIES}
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, results)
        if rank == 0:
            report(gathered, args)
    finally:
        dist.destroy_process_group()


def report(per_rank: list[dict[str, dict[str, int]]], args: argparse.Namespace) -> None:
    parameters = per_rank[0]["ddp"]["total_parameters"]
    print(
        f"{parameters:,} parameters (d_model {args.d_model}, {args.layers}+{args.layers} "
        f"layers, d_ff {args.d_ff}, vocab {args.vocab}), {len(per_rank)} ranks, AdamW, fp32"
    )
    print(f"{'rank':>4} {'part':<11} {'ddp MB':>9} {'fsdp MB':>9} {'fsdp/ddp':>9}")
    rows = []
    for rank, results in enumerate(per_rank):
        for part in (*PARTS, "total"):
            ddp, fsdp = (
                sum(results[s][p] for p in PARTS) if part == "total" else results[s][part]
                for s in STRATEGIES
            )
            ratio = fsdp / ddp
            rows.append({"rank": rank, "part": part, "ddp": ddp, "fsdp": fsdp, "ratio": ratio})
            print(f"{rank:>4} {part:<11} {ddp / 2**20:>9.2f} {fsdp / 2**20:>9.2f} {ratio:>9.4f}")
    target = 1 / len(per_rank)
    worst = max(abs(row["ratio"] / target - 1) for row in rows)
    verdict = "met" if worst <= 0.05 else "NOT met"
    print(
        f"target: fsdp holds 1/{len(per_rank)} of ddp's bytes per rank within 5%: {verdict} "
        f"(largest deviation {100 * worst:.2f}%)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "parameters": parameters,
            "ranks": len(per_rank),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "rows": rows,
            "largest_deviation": worst,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    mp.spawn(worker, args=(args.ranks, free_port(), args), nprocs=args.ranks, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
