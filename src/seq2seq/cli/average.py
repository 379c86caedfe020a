"""``seq2seq-average``: average the weights of a run's last checkpoints into one file.

Example::

    seq2seq-average outputs/g2p --last 4          # -> outputs/g2p/checkpoints/average_last4.pt
    seq2seq-average a.pt b.pt c.pt --output avg.pt
    seq2seq-generate checkpoint=outputs/g2p/checkpoints/average_last4.pt split=test

``--last N`` needs a run that kept N step checkpoints: train it with
``trainer.keep_last=N`` or more (the default keeps 2).

Parameters are averaged; buffers (FAVOR+ projections) come from the newest checkpoint, as do
the config and tokenizers, so ``seq2seq-generate`` reads the result like any checkpoint.
It cannot be resumed from: it has no optimizer state.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from seq2seq.cli.errors import run_path_job
from seq2seq.jobs.average import average


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-average",
        description="Average the weights of several checkpoints of one run, for generation.",
    )
    parser.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="RUN_DIR_OR_FILE",
        help="a run dir of seq2seq-train (with --last N), or checkpoint .pt files",
    )
    parser.add_argument(
        "--last",
        type=int,
        metavar="N",
        help="average the newest N step checkpoints of the run dir",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="the averaged checkpoint (default for a run dir: checkpoints/average_lastN.pt)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seq2seq-average``; returns the exit status (errors exit with 2)."""
    return run_path_job(
        build_parser(),
        argv,
        lambda args: average(args.inputs, last=args.last, output=args.output),
    )


if __name__ == "__main__":
    raise SystemExit(main())
