"""Checkpoint averaging: the mean of the weights of a run's last few checkpoints.

The usual last step of fairseq-style training (its `average_checkpoints.py`): averaging the
weights saved at the end of training smooths out the noise of the last updates, and often
gains a fraction of a BLEU or WER point at no training cost. The result is a checkpoint for
generation and evaluation only; it has no optimizer state to resume from.

Checkpoints are read one at a time into a running sum, so memory holds one checkpoint, the
newest one's weights and the sum, however many are averaged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.jobs.trained_run import rebuild_run
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.training.checkpoint import (
    AVERAGED_KEY,
    BEST_NAME,
    CHECKPOINT_PATTERN,
    DATA_KEY,
    EMA_KEY,
    atomic_save,
    checkpoint_paths,
    evaluates_with_ema,
    load_checkpoint,
    weights_for_inference,
)
from seq2seq.training.config_diff import check_same_model
from seq2seq.training.run_lock import run_dir_lock
from seq2seq.training.sharded_checkpoint import is_sharded_checkpoint

log = logging.getLogger("seq2seq.average")

ParameterNames = Callable[[dict[str, Any], Path], Collection[str]]
"""`(checkpoint, path) -> names of the model's parameters` (the rest are buffers)."""


class RunningAverage:
    """The mean of the parameters of states added one at a time.

    Sums are kept in float32 or wider, whatever the weights' dtype. Every other entry
    (buffers such as FAVOR+ projections, which training redraws) is not averaged: `mean`
    takes it from the state it is given, the newest one. All states must hold the same
    names with the same shapes."""

    def __init__(self, parameters: Collection[str]) -> None:
        self.parameters = set(parameters)
        self.sums: dict[str, Tensor] = {}
        self.shapes: dict[str, torch.Size] = {}
        self.first = ""
        self.count = 0

    def add(self, state: Mapping[str, Tensor], source: str) -> None:
        if self.count == 0:
            self.shapes = {name: tensor.shape for name, tensor in state.items()}
            self.first = source
        self._check(state, source)
        for name, tensor in state.items():
            if name not in self.parameters or not tensor.is_floating_point():
                continue
            wide = tensor.to(torch.promote_types(tensor.dtype, torch.float32))
            if name in self.sums:
                self.sums[name] += wide
            else:
                self.sums[name] = wide.clone()
        self.count += 1

    def _check(self, state: Mapping[str, Tensor], source: str) -> None:
        missing = sorted(self.shapes.keys() - state.keys())
        extra = sorted(state.keys() - self.shapes.keys())
        if missing or extra:
            raise ValueError(
                f"{source} holds other weights than {self.first} (missing {missing}, extra "
                f"{extra}); only checkpoints of one model can be averaged"
            )
        for name, tensor in state.items():
            if tensor.shape != self.shapes[name]:
                raise ValueError(
                    f"weight {name!r} has shape {tuple(tensor.shape)} in {source} but "
                    f"{tuple(self.shapes[name])} in {self.first}; only checkpoints of one "
                    "model can be averaged"
                )

    def mean(self, newest: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The averaged parameters, and `newest`'s other entries (it must be one of the
        states added)."""
        if self.count == 0:
            raise ValueError("nothing to average: no checkpoints given")
        self._check(newest, "the newest checkpoint")
        return {
            name: (self.sums[name] / self.count).to(tensor.dtype)
            if name in self.sums
            else tensor.clone()
            for name, tensor in newest.items()
        }


NOT_TASK_STATE = (
    "model",
    EMA_KEY,
    "config",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
    "trainer",
    DATA_KEY,
)
"""Checkpoint entries that are not the task's state (tokenizers, labels ...)."""


def task_state(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's task state: what its task needs besides the weights to predict."""
    return {
        key: value
        for key, value in checkpoint.items()
        if key not in NOT_TASK_STATE and key not in (AVERAGED_KEY, "batch_layout", "monitor")
    }


def _same(mine: Any, theirs: Any) -> bool:
    if isinstance(mine, Tensor) and isinstance(theirs, Tensor):
        return mine.shape == theirs.shape and bool(torch.equal(mine, theirs))
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        return mine.keys() == theirs.keys() and all(_same(mine[k], theirs[k]) for k in mine)
    return bool(mine == theirs)


def _differences(state: Mapping[str, Any], first: Mapping[str, Any]) -> Iterator[str]:
    """What differs between two task states, in words."""
    for key in sorted(state.keys() | first.keys()):
        mine, theirs = state.get(key), first.get(key)
        if key == TOKENIZER_KEY and isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            for side in sorted(mine.keys() | theirs.keys()):
                if side not in mine or side not in theirs or not _same(mine[side], theirs[side]):
                    yield f"{side} tokenizers (the same ids stand for other pieces)"
        elif mine is None or theirs is None or not _same(mine, theirs):
            yield key


def _check_same_task_state(
    state: Mapping[str, Any], first: Mapping[str, Any], path: Path, first_path: Path
) -> None:
    """Weights trained on other token ids or other labels (a tokenizer trained on other
    data, even of the same size and config) mean other things: averaging them is noise."""
    for what in _differences(state, first):
        raise ValueError(
            f"{path} and {first_path} have different {what}; only checkpoints of one run "
            "can be averaged"
        )


def average_checkpoint_files(
    paths: Sequence[Path], parameter_names: ParameterNames
) -> dict[str, Any]:
    """One checkpoint whose parameters are the mean of those of `paths`, read one at a time.

    The weights averaged are those each checkpoint decodes with (`weights_for_inference`):
    the EMA's where its run evaluated with them (`trainer.ema_eval`), so averaging and EMA
    compose; the result holds the mean as its `model`. The config, tokenizers and buffers
    are the newest checkpoint's (the highest step). Every checkpoint must come from the same
    model config, all with evaluated EMA weights or none; an averaged one is refused."""
    average: RunningAverage | None = None
    first_config = ""
    newest: dict[str, Any] = {}
    newest_step = -1
    entries: list[tuple[int, str]] = []
    for path in paths:
        checkpoint = load_checkpoint(path)
        if AVERAGED_KEY in checkpoint:
            raise ValueError(f"{path} is already an average of checkpoints; average the originals")
        if average is None:
            average = RunningAverage(parameter_names(checkpoint, path))
            first_config = checkpoint["config"]
            first_state = task_state(checkpoint)
            first_ema = evaluates_with_ema(checkpoint)
        else:
            check_same_model(
                checkpoint["config"],
                first_config,
                source=path,
                advice=f"only checkpoints of one model can be averaged (compared with {paths[0]})",
            )
            _check_same_task_state(task_state(checkpoint), first_state, path, paths[0])
            if evaluates_with_ema(checkpoint) != first_ema:
                with_ema, without = (path, paths[0]) if not first_ema else (paths[0], path)
                raise ValueError(
                    f"{with_ema} decodes with its EMA weights (trainer.ema_eval) but {without} "
                    "with its trained weights; only checkpoints of one run can be averaged"
                )
        weights = weights_for_inference(checkpoint)
        average.add(weights, str(path))
        step = checkpoint_step(checkpoint)
        twin = next((name for seen, name in entries if seen == step >= 0), None)
        if twin is not None:
            raise ValueError(
                f"{path} and {twin} were both written at step {step} ({BEST_NAME} is a copy "
                "of a step checkpoint); give each step once"
            )
        entries.append((step, path.name))
        if not newest or step > newest_step:
            newest = {"config": checkpoint["config"], **task_state(checkpoint)}
            newest["model"] = weights
            newest_step = step
        del checkpoint, weights
    if average is None:
        raise ValueError("nothing to average: no checkpoints given")
    entries.sort()
    averaged = {**newest, "model": average.mean(newest["model"])}
    averaged[AVERAGED_KEY] = {
        "files": [name for _, name in entries],
        "steps": [step for step, _ in entries],
    }
    return averaged


def checkpoint_step(checkpoint: Mapping[str, Any]) -> int:
    """The optimizer step a training checkpoint was written at; -1 when it has none."""
    trainer = checkpoint.get("trainer")
    return int(trainer.get("step", -1)) if isinstance(trainer, Mapping) else -1


def input_files(inputs: Sequence[Path], last: int | None) -> list[Path]:
    """The checkpoint files to average: the newest `last` step checkpoints of one run dir,
    or the `.pt` files given."""
    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        raise FileNotFoundError(f"no such checkpoint file or run dir: {', '.join(missing)}")
    # A `.dcp` checkpoint is a directory too, but not a run dir.
    if any(path.is_dir() and not is_sharded_checkpoint(path) for path in inputs):
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
        if not inputs[0].is_dir() or is_sharded_checkpoint(inputs[0]):
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
    model = rebuild_run(checkpoint, path).model
    # Every name of a tied weight (the output layer tied to the embedding) is a parameter:
    # named once only, the other would be copied from the newest checkpoint, unaveraged.
    return {name for name, _ in model.named_parameters(remove_duplicate=False)}


def _run_dir(destination: Path) -> Path | None:
    """The run dir of seq2seq-train that the average is written into (its checkpoints/),
    or None for a file elsewhere."""
    return destination.parent.parent if destination.parent.name == "checkpoints" else None


def average(inputs: Sequence[Path], *, last: int | None, output: Path | None) -> Path:
    """Average, write the result atomically, return its path."""
    if last is not None and last < 1:
        raise ValueError(f"--last {last} must be at least 1")
    files = input_files(inputs, last)
    destination = output_file(output, inputs, files)
    run_dir = _run_dir(destination)
    # A training run writing that dir would prune or replace the checkpoints being read.
    with run_dir_lock(run_dir, setting="--output") if run_dir else contextlib.nullcontext():
        averaged = average_checkpoint_files(files, parameter_names)
        destination.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(averaged, destination)
    steps = averaged[AVERAGED_KEY]["steps"]
    log.info("averaged %d checkpoints (steps %s) into %s", len(files), steps, destination)
    return destination
