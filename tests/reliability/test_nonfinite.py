"""A non-finite forward in the middle of training: `skip` drops the step and carries on,
counting it in metrics.json and TensorBoard; `stop` (or too many skips) raises
NonFiniteError; every message names the first module that produced the inf."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn

from seq2seq.tasks.seq2seq import Seq2SeqTask
from seq2seq.training.run import train
from seq2seq.training.trainer import NonFiniteError

Compose = Callable[..., DictConfig]

POISONED_STEP = 2
MODULE = r"decoder\.layers\.0\.feedforward \(FeedForward\)"
RUN = (
    "experiment=toy_reverse",
    "trainer.max_steps=4",
    "trainer.eval_every=4",
    "data.validation_size=4",
    "data.splits.test=null",
)


@pytest.fixture
def poison_feedforward(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make decoder layer 0's feed-forward return inf on training step `POISONED_STEP`.

    The step is counted by the module's training-mode forwards with gradients on (one a
    step, no accumulation); the trainer's no-grad rerun that looks for the culprit, during
    that same step, sees the inf too, while evaluation (eval mode) never does. Returns the
    steps at which the hook poisoned an output."""
    real_build_model = Seq2SeqTask.build_model
    poisoned: list[int] = []

    def build_model(self: Seq2SeqTask) -> nn.Module:
        model = real_build_model(self)
        calls = [0]

        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
            if not module.training:
                return None
            if torch.is_grad_enabled():
                calls[0] += 1
            if calls[0] != POISONED_STEP:
                return None
            poisoned.append(calls[0])
            return output + float("inf")

        model.decoder.layers[0].feedforward.register_forward_hook(hook)  # type: ignore[union-attr, index, operator]
        return model

    monkeypatch.setattr(Seq2SeqTask, "build_model", build_model)
    return poisoned


def test_skip_drops_the_step_counts_it_and_names_the_module(
    compose_config: Compose,
    tmp_path: Path,
    poison_feedforward: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        train(compose_config(*RUN, "trainer.nonfinite=skip"), run)
    assert poison_feedforward, "the hook never fired"

    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"], metrics["skipped_steps"]) == ("max_steps", 4, 1)
    # The skipped step left no inf in the weights: validation is finite.
    assert all(math.isfinite(v) for v in metrics["final_validation"].values()), metrics

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/skipped_steps")] == [
        (POISONED_STEP, 1.0)
    ]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"non-finite loss or gradient at step {POISONED_STEP}" in warnings[0]
    assert "first non-finite output: decoder.layers.0.feedforward (FeedForward)" in warnings[0]
    assert "trainer.nonfinite=skip" in warnings[0]


def test_stop_raises_naming_the_module(
    compose_config: Compose, tmp_path: Path, poison_feedforward: list[int]
) -> None:
    with pytest.raises(
        NonFiniteError,
        match=rf"at step {POISONED_STEP} .*first non-finite output: {MODULE}.*"
        r"trainer\.nonfinite=stop",
    ):
        train(compose_config(*RUN, "trainer.nonfinite=stop"), tmp_path / "run")


def test_skip_stops_beyond_max_skipped_steps(
    compose_config: Compose, tmp_path: Path, poison_feedforward: list[int]
) -> None:
    with pytest.raises(
        NonFiniteError,
        match=rf"first non-finite output: {MODULE}.*1 steps skipped, more than "
        r"trainer\.max_skipped_steps=0",
    ):
        train(
            compose_config(*RUN, "trainer.nonfinite=skip", "trainer.max_skipped_steps=0"),
            tmp_path / "run",
        )
