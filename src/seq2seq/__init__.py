"""Config-driven sequence-to-sequence training with a universal Performer layer stack."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from seq2seq.jobs.trained_run import TrainedRun

__version__ = "0.1.0"


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    """The trained run of an export dir of seq2seq-export (or of a run dir or a checkpoint
    `.pt`): `run.model` in eval mode on `device`, `run.config` (its training config),
    `run.task` (its tokenizers, labels), and `run.predict(lines)`, which decodes as
    seq2seq-generate does. No Hydra and nothing from the working dir."""
    # Imported here: `import seq2seq.<anything>` runs this module first, and must stay light.
    from seq2seq.jobs.trained_run import load_pretrained as load

    return load(path, device)


__all__ = ["__version__", "load_pretrained"]
