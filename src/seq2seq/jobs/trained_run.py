"""A trained run rebuilt from one checkpoint: its config, its task and its model, for
seq2seq-generate, seq2seq-evaluate --checkpoint and seq2seq-average. The checkpoint alone is enough: it holds the
resolved config and the task's state (its tokenizers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.config.keys import with_renamed_keys
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import Precision
from seq2seq.model import PerformerModel
from seq2seq.tasks import Task, task_class
from seq2seq.training.checkpoint import BEST_NAME, load_checkpoint, strip_prefixes
from seq2seq.training.precision import PRECISIONS


@dataclass
class TrainedRun:
    """The model of a checkpoint (weights in, in eval mode), its training config and task."""

    model: PerformerModel
    config: TrainConfig
    task: Task


def checkpoint_file(value: str) -> Path:
    """`checkpoint=` as a file: a `.pt` path, or a run dir's `checkpoints/best.pt`."""
    path = Path(value)
    if path.is_dir():
        for candidate in (path / "checkpoints" / BEST_NAME, path / BEST_NAME):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"checkpoint={value!r} is a directory without checkpoints/{BEST_NAME}; pass a run "
            "dir of seq2seq-train or a checkpoint .pt file"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint={value!r} does not exist; pass a run dir of seq2seq-train or a "
            "checkpoint .pt file"
        )
    return path


def saved_config(checkpoint: dict[str, Any], path: Path) -> TrainConfig:
    """The training config a checkpoint holds; `path` names it in errors."""
    try:
        saved = with_renamed_keys(yaml.safe_load(checkpoint["config"]))
        config = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(saved))
        return OmegaConf.to_object(config)  # type: ignore[return-value]
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ValueError(
            f"checkpoint {path}: its saved config does not fit the current TrainConfig "
            f"schema ({error})"
        ) from error


def rebuild_run(checkpoint: dict[str, Any], path: Path) -> TrainedRun:
    """The run of a loaded checkpoint, its model on the CPU; `path` names it in errors."""
    config = saved_config(checkpoint, path)
    task = task_class(config.task).restore(config, checkpoint, path)
    model = task.build_model()
    try:
        model.load_state_dict(strip_prefixes(checkpoint["model"]))
    except RuntimeError as error:  # missing, unexpected or misshapen weights
        raise ValueError(
            f"checkpoint {path}: its weights do not fit the model its config builds ({error})"
        ) from error
    model.eval()
    return TrainedRun(model=model, config=config, task=task)


def load_run(path: Path, device: torch.device) -> TrainedRun:
    """Rebuild the run of one checkpoint file, its model on `device`."""
    run = rebuild_run(load_checkpoint(path), path)
    run.model.to(device)
    return run


def evaluate_run(path: Path, split: str, device: torch.device) -> dict[str, float]:
    """The figures training's evaluation gives a split (`validation` or `test`) for the
    checkpoint `path`: its task prepares the split from the run's data config and
    evaluates the checkpoint's model on it, in the run's precision."""
    run = load_run(path, device)
    data = run.task.prepare()
    if split not in data.splits:
        raise ValueError(
            f"--split {split}: the run's data has no {split} split (it has {sorted(data.splits)})"
        )
    precision = run.config.trainer.precision
    if precision == Precision.fp16 and device.type != "cuda":
        precision = Precision.fp32
    evaluator = run.task.evaluator(
        split, run.model, device=device, autocast_dtype=PRECISIONS[precision]
    )
    return evaluator.evaluate(step=0).figures
