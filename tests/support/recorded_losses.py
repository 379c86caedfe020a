"""Record the loss of every training step, and stop a run by SIGTERM after a given step:
the two halves of every "resume equals an unbroken run" test."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from seq2seq.training.trainer import Trainer

ORIGINAL_TRAIN_STEP = Trainer.train_step


def record_losses(monkeypatch: pytest.MonkeyPatch, *, stop_after: int | None) -> list[float]:
    """Capture each step's loss in the returned list; send this process SIGTERM after step
    `stop_after` (the trainer then checkpoints and stops as on a real signal)."""
    losses: list[float] = []

    def train_step(self: Trainer, group: Any) -> dict[str, float]:
        figures = ORIGINAL_TRAIN_STEP(self, group)
        losses.append(figures["loss"])
        if stop_after is not None and self.state.step == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return figures

    monkeypatch.setattr(Trainer, "train_step", train_step)
    return losses
