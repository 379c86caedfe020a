"""A trained run rebuilt from one checkpoint: its config, its task and its model, for
seq2seq-generate, seq2seq-evaluate --checkpoint, seq2seq-average, seq2seq-export and
`seq2seq.load_pretrained`. The checkpoint alone is enough: it holds the resolved config and
the task's state (its tokenizers). An export dir of seq2seq-export is read as the
checkpoint it was written from (`seq2seq.jobs.export_files`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from seq2seq.config.keys import with_renamed_keys
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import Precision
from seq2seq.jobs.export_files import MANIFEST_NAME, WEIGHTS_NAME, read_export
from seq2seq.model import PerformerModel
from seq2seq.tasks import DecodingOptions, Task, task_class
from seq2seq.training.checkpoint import (
    BEST_NAME,
    BEST_NAMES,
    load_checkpoint,
    weights_for_inference,
)
from seq2seq.training.precision import PRECISIONS
from seq2seq.training.sharded_checkpoint import is_sharded_checkpoint


@dataclass
class TrainedRun:
    """The model of a checkpoint (weights in, in eval mode), its training config and task."""

    model: PerformerModel
    config: TrainConfig
    task: Task

    def predict(self, lines: Sequence[str]) -> list[str]:
        """What seq2seq-generate writes for each of `lines` (a hypothesis, a label or a
        continuation), decoded with the run's own generation settings on the model's
        device, in the run's precision."""
        device = next(self.model.parameters()).device
        options = DecodingOptions(
            device=device,
            autocast_dtype=PRECISIONS[run_precision(self.config, device)],
            max_tokens=self.config.data.max_tokens,
        )
        predictions = self.task.predict(
            self.model,
            lines=lines,
            split=None,
            generation=self.config.generation,
            options=options,
        )
        return predictions.lines


def run_precision(config: TrainConfig, device: torch.device) -> Precision:
    """The run's `trainer.precision`, or fp32 for an fp16 run off CUDA (fp16 needs it)."""
    precision = config.trainer.precision
    if precision == Precision.fp16 and device.type != "cuda":
        return Precision.fp32
    return precision


def checkpoint_file(value: str) -> Path:
    """`checkpoint=` as a file: a `.pt` path (or a `.dcp` directory of a
    `trainer.strategy=fsdp` run), a run dir's `checkpoints/best.pt` (or `best.dcp`), or an
    export dir's `model.safetensors` (which `load_run` reads with the files beside it)."""
    path = Path(value)
    if is_sharded_checkpoint(path):
        return path
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():  # an export dir of seq2seq-export
            return path / WEIGHTS_NAME
        for name in BEST_NAMES:
            for candidate in (path / "checkpoints" / name, path / name):
                if candidate.is_file() or is_sharded_checkpoint(candidate):
                    return candidate
        raise FileNotFoundError(
            f"checkpoint={value!r} is a directory without checkpoints/{BEST_NAME} or "
            f"{MANIFEST_NAME}; pass a run dir of seq2seq-train, an export dir of "
            "seq2seq-export or a checkpoint .pt file"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint={value!r} does not exist; pass a run dir of seq2seq-train, an export "
            "dir of seq2seq-export or a checkpoint .pt file"
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


def inference_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint decodes and scores with, without wrapper prefixes: what
    `rebuild_run` loads, and so what seq2seq-export writes."""
    return weights_for_inference(checkpoint)


def rebuild_run(checkpoint: dict[str, Any], path: Path) -> TrainedRun:
    """The run of a loaded checkpoint, its model on the CPU; `path` names it in errors."""
    config = saved_config(checkpoint, path)
    task = task_class(config.task).restore(config, checkpoint, path)
    model = task.build_model()
    try:
        model.load_state_dict(inference_weights(checkpoint))
    except RuntimeError as error:  # missing, unexpected or misshapen weights
        raise ValueError(
            f"checkpoint {path}: its weights do not fit the model its config builds ({error})"
        ) from error
    model.eval()
    return TrainedRun(model=model, config=config, task=task)


def load_run(path: Path, device: torch.device) -> TrainedRun:
    """Rebuild the run of one checkpoint file (or of an export dir's weights file, with the
    files beside it), its model on `device`."""
    checkpoint = read_export(path) if path.suffix == ".safetensors" else load_checkpoint(path)
    run = rebuild_run(checkpoint, path)
    run.model.to(device)
    return run


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    """The trained run of an export dir of seq2seq-export (or of a run dir or a checkpoint
    `.pt`, as seq2seq-generate's `checkpoint=` takes): its model on `device`, in eval mode,
    with its training config and its task (tokenizers, labels). No Hydra, no working-dir
    files: `run.predict(lines)` decodes as seq2seq-generate does."""
    return load_run(checkpoint_file(str(path)), torch.device(device))


def evaluate_model(
    run: TrainedRun, model: nn.Module, split: str, device: torch.device
) -> dict[str, float]:
    """The figures training's evaluation gives a split (`validation` or `test`) for
    `model` (the run's own, or an ensemble led by the run, `seq2seq.jobs.ensemble`): the
    run's task prepares the split from its data config and evaluates `model` on it, in
    the run's precision."""
    data = run.task.prepare()
    if split not in data.splits:
        raise ValueError(
            f"--split {split}: the run's data has no {split} split (it has {sorted(data.splits)})"
        )
    evaluator = run.task.evaluator(
        split,
        model,
        device=device,
        autocast_dtype=PRECISIONS[run_precision(run.config, device)],
    )
    return evaluator.evaluate(step=0).figures
