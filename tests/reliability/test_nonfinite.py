"""A non-finite forward in the middle of training: `skip` drops the step and carries on,
counting it in metrics.json and TensorBoard; `stop` (or too many skips) ends the run like
any other stop: a checkpoint of the last step taken, metrics.json saying `nonfinite`, the
step and the module, one error line and, from the command line, exit status 1 without a
traceback; every message names the first module that produced the inf."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn

from seq2seq.jobs.train import run_training, train
from seq2seq.tasks.seq2seq import Seq2SeqTask

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


def _stopped_on_the_fault(run: Path, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    """The run stopped after step POISONED_STEP - 1 with a checkpoint of it, metrics.json
    names the step and the module, and the log holds one error line about it."""
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("nonfinite", POISONED_STEP - 1)
    fault = metrics["nonfinite"]
    assert fault["step"] == POISONED_STEP
    assert fault["where"] == "decoder.layers.0.feedforward (FeedForward)"
    assert re.search(rf"first non-finite output: {MODULE}.*{reason}", fault["error"])
    assert "test" not in metrics  # a run that did not finish is not tested
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step_{POISONED_STEP - 1:08d}.pt"
    ]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(fault["error"])
    assert f"checkpoint {run / 'checkpoints'}" in errors[0]
    assert "trainer.resume=auto" in errors[0]


def test_stop_ends_the_run_naming_the_step_and_the_module(
    compose_config: Compose,
    tmp_path: Path,
    poison_feedforward: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        outcome = run_training(compose_config(*RUN, "trainer.nonfinite=stop"), run)
    assert outcome.fault is not None and "trainer.nonfinite=stop" in outcome.fault
    _stopped_on_the_fault(run, caplog, r"stopping \(trainer\.nonfinite=stop\)")


def test_skip_stops_beyond_max_skipped_steps(
    compose_config: Compose,
    tmp_path: Path,
    poison_feedforward: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = tmp_path / "run"
    cfg = compose_config(*RUN, "trainer.nonfinite=skip", "trainer.max_skipped_steps=0")
    with caplog.at_level(logging.INFO):
        run_training(cfg, run)
    _stopped_on_the_fault(run, caplog, r"1 steps skipped, more than trainer\.max_skipped_steps=0")
    # Skip is in effect already: the advice is the limit or the learning rate, with their values.
    error = next(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    advice = error.split("trainer.resume=auto", 1)[1]
    assert "raise trainer.max_skipped_steps from 0" in advice, error
    assert f"lower optim.lr from {cfg.optim.lr:g}" in advice, error
    assert "trainer.nonfinite=skip" not in advice, error


def test_the_command_line_reports_a_fault_in_one_line_and_exits_1(
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
    tmp_path: Path,
) -> None:
    """An absurd learning rate makes the weights overflow after the first step: the run
    stops at step 2 with a checkpoint of step 1, metrics.json and exit status 1."""
    env = make_subprocess_env(tmp_path)
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        train_command(
            tmp_path,
            "trainer.max_steps=4",
            "trainer.eval_every=4",
            "trainer.nonfinite=stop",
            "optim.lr=1e30",
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "][ERROR] - " in line]
    assert len(errors) == 1, output
    assert "non-finite loss or gradient at step 2" in errors[0]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"], metrics["nonfinite"]["step"]) == (
        "nonfinite",
        1,
        2,
    )
    assert metrics["nonfinite"]["where"]
    assert (tmp_path / "run" / "checkpoints" / "step_00000001.pt").is_file()
