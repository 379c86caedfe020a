"""For each task, a run stopped by SIGTERM and resumed takes the same steps with the same
losses as an unbroken run (the task's state, batches and data position are checkpointed
like everything else)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from seq2seq.jobs.train import train
from support.recorded_losses import record_losses

Compose = Callable[..., DictConfig]

RUNS = {
    "classification": ("experiment=classify_brackets", "model.dropout=0.1"),
    "language_modeling": (
        "experiment=lm_dyck",
        "model.dropout=0.1",
        "data.block_size=16",
        "data.max_tokens=48",
        "trainer.sampled_documents=4",
        "model.decoder.self_attention=causal_linear",
        "model.linear.redraw_interval=3",
    ),
    # A hybrid stack from the command line: the delta rule, then softmax (every layer's
    # state, conv and gate parameters in the checkpoint).
    "language_modeling_hybrid": (
        "experiment=lm_dyck",
        "model.dropout=0.1",
        "data.block_size=16",
        "data.max_tokens=48",
        "trainer.sampled_documents=4",
        "model.decoder.layers=2",
        "model.decoder.self_attention=delta+softmax",
        "model.linear.chunk_size=4",
    ),
}
COMMON = ("trainer.max_steps=8", "trainer.eval_every=4")


@pytest.mark.parametrize("task", sorted(RUNS))
def test_resume_matches_an_unbroken_run(
    task: str, compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = (*RUNS[task], *COMMON)
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides), tmp_path / "unbroken")

    first = record_losses(monkeypatch, stop_after=3)
    run = tmp_path / "interrupted"
    train(compose_config(*overrides), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"], len(first)) == ("SIGTERM", 3, 3)

    second = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides, "trainer.resume=auto"), run)
    assert len(unbroken) == 8
    assert first + second == pytest.approx(unbroken, rel=1e-5, abs=1e-6)
    resumed = json.loads((run / "metrics.json").read_text())
    expected = json.loads((tmp_path / "unbroken" / "metrics.json").read_text())
    assert resumed["test"] == pytest.approx(expected["test"])
