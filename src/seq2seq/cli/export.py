"""``seq2seq-export``: a trained run as a self-contained dir to load or publish.

Example::

    seq2seq-export outputs/2024-05-01/12-00-00 exports/reverse     # the run's best.pt
    seq2seq-export outputs/g2p/checkpoints/average_last4.pt exports/g2p
    seq2seq-generate checkpoint=exports/reverse input=sources.txt
    python -c 'import seq2seq; print(seq2seq.load_pretrained("exports/reverse").predict(["abc"]))'
    huggingface-cli upload <user>/reverse exports/reverse
    seq2seq-export outputs/2024-05-01/12-00-00 exports/reverse --onnx   # also ONNX graphs

The dir holds ``model.safetensors``, ``config.yaml``, the tokenizers, ``export.json`` and a
model card ``README.md`` with Hugging Face Hub front matter; with ``--onnx``, ONNX graphs
too (``seq2seq.jobs.onnx_export``), and a line ``not exported: <kind>: <reason>`` for each
attention kind whose graph could not be written. An existing ``OUT_DIR`` must be
empty, or an earlier export with nothing else in it, which is replaced.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from seq2seq.cli.errors import run_path_job
from seq2seq.jobs.export import export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-export",
        description=(
            "Export a trained run (its best.pt) or a checkpoint as safetensors weights, config, "
            "tokenizers and a model card, loadable without the run dir."
        ),
    )
    parser.add_argument(
        "source",
        type=Path,
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a run dir of seq2seq-train (its checkpoints/best.pt) or a checkpoint .pt file",
    )
    parser.add_argument(
        "out_dir",
        type=Path,
        metavar="OUT_DIR",
        help="the export dir: new, empty, or an earlier export (replaced)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help=(
            "also write ONNX graphs: model.onnx (classifier), or encoder.onnx and "
            "decoder_step.onnx (one decoding step, states in and out); needs seq2seq[onnx]"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seq2seq-export``; returns the exit status (errors exit with 2)."""
    return run_path_job(
        build_parser(), argv, lambda args: export(args.source, args.out_dir, onnx=args.onnx)
    )


if __name__ == "__main__":
    raise SystemExit(main())
