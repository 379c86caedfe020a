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
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.cli.generate import rebuild_run
from seq2seq.training.averaging import AVERAGED_KEY, average_checkpoint_files
from seq2seq.training.checkpoint import (
    BEST_NAME,
    CHECKPOINT_PATTERN,
    atomic_save,
    checkpoint_paths,
    load_checkpoint,
)

log = logging.getLogger("seq2seq.average")


def input_files(inputs: Sequence[Path], last: int | None) -> list[Path]:
    """The checkpoint files to average: the newest `last` step checkpoints of one run dir,
    or the `.pt` files given."""
    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        raise FileNotFoundError(f"no such checkpoint file or run dir: {', '.join(missing)}")
    if any(path.is_dir() for path in inputs):
        if len(inputs) != 1:
            raise ValueError(
                "give one run dir (with --last N) or several checkpoint files, not both: "
                f"got {[str(path) for path in inputs]}"
            )
        if last is None:
            raise ValueError(f"{inputs[0]} is a run dir: say how many checkpoints with --last N")
        run_dir = inputs[0]
        directory = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
        found = checkpoint_paths(directory)
        if len(found) < last:
            raise ValueError(
                f"--last {last}: {directory} holds {len(found)} step checkpoints "
                f"({', '.join(path.name for path in found) or 'none'}); keep more with "
                "trainer.keep_last, or ask for fewer"
            )
        return found[-last:]
    if last is not None:
        raise ValueError("--last N picks from a run dir; with checkpoint files, list them all")
    if len(set(path.resolve() for path in inputs)) != len(inputs):
        raise ValueError(f"a checkpoint is listed twice: {[str(path) for path in inputs]}")
    return list(inputs)


def output_file(output: Path | None, inputs: Sequence[Path], files: Sequence[Path]) -> Path:
    """Where the average goes; never over one of its inputs or a trainer-written file."""
    if output is None:
        if not inputs[0].is_dir():
            raise ValueError("with checkpoint files, name the result with --output FILE")
        output = files[-1].parent / f"average_last{len(files)}.pt"
    if output.resolve() in {path.resolve() for path in files}:
        raise ValueError(f"--output {output} is one of the checkpoints being averaged")
    if CHECKPOINT_PATTERN.match(output.name) or output.name == BEST_NAME:
        raise ValueError(
            f"--output {output}: the trainer owns step_*.pt and {BEST_NAME} names (it prunes "
            "and resumes from them); choose another name"
        )
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; give a file name")
    if output.exists() and not _is_average(output):
        raise ValueError(
            f"--output {output} exists and is not an averaged checkpoint; choose another name "
            "(only an earlier average is replaced)"
        )
    return output


def _is_average(path: Path) -> bool:
    try:
        return AVERAGED_KEY in load_checkpoint(path)
    except ValueError:  # not a checkpoint at all
        return False


def parameter_names(checkpoint: dict[str, Any], path: Path) -> set[str]:
    """The names of the checkpoint's model parameters (its other entries are buffers).

    Rebuilding the model also loads the checkpoint's weights strictly; every other input
    must match their names and shapes, so the average loads wherever this one does."""
    return {name for name, _ in rebuild_run(checkpoint, path).model.named_parameters()}


def average(inputs: Sequence[Path], *, last: int | None, output: Path | None) -> Path:
    """Average, write the result atomically, return its path."""
    if last is not None and last < 1:
        raise ValueError(f"--last {last} must be at least 1")
    files = input_files(inputs, last)
    destination = output_file(output, inputs, files)
    averaged = average_checkpoint_files(files, parameter_names)
    destination.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(averaged, destination)
    steps = averaged[AVERAGED_KEY]["steps"]
    log.info("averaged %d checkpoints (steps %s) into %s", len(files), steps, destination)
    return destination


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
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        path = average(args.inputs, last=args.last, output=args.output)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
