"""Interruption and resume: a run stopped by SIGTERM and resumed equals an unbroken run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

from seq2seq.jobs.train import train
from seq2seq.model import stack as stack_module
from seq2seq.training import checkpoint as checkpoint_module
from seq2seq.training.checkpoint import CheckpointManager, load_checkpoint
from support.recorded_losses import record_losses

Compose = Callable[..., DictConfig]

RESUME_RUN = (
    "experiment=toy_reverse",
    "trainer.max_steps=8",
    "trainer.eval_every=4",
    "model.dropout=0.1",
    "data.max_tokens=64",
)


@pytest.mark.parametrize(
    "attention",
    [
        ("model.decoder.self_attention=softmax",),
        (
            "attention=performer",
            "model.linear.redraw_interval=3",
            "model.linear.nb_features=16",
        ),
    ],
    ids=["softmax", "causal_linear"],
)
def test_resume_matches_an_unbroken_run(
    attention: tuple[str, ...],
    compose_config: Compose,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*RESUME_RUN, *attention), tmp_path / "unbroken")

    first = record_losses(monkeypatch, stop_after=3)
    run = tmp_path / "interrupted"
    train(compose_config(*RESUME_RUN, *attention), run)
    assert len(first) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "SIGTERM" and metrics["step"] == 3

    second = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*RESUME_RUN, *attention, "trainer.resume=auto"), run)
    assert first + second == pytest.approx(unbroken, rel=1e-5, abs=1e-6)

    final_unbroken = load_checkpoint(tmp_path / "unbroken" / "checkpoints" / "step_00000008.pt")
    final_resumed = load_checkpoint(run / "checkpoints" / "step_00000008.pt")
    for name, tensor in final_unbroken["model"].items():
        torch.testing.assert_close(final_resumed["model"][name], tensor, rtol=1e-5, atol=1e-6)


def test_activation_checkpointing_trains_and_resumes_as_without_it(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trainer.activation_checkpointing=true under dropout: the losses of an unbroken run
    without it, also when interrupted and resumed, and its layers did run checkpointed."""
    checkpointed = []
    original = stack_module.checkpoint

    def counting_checkpoint(*args: Any, **kwargs: Any) -> Any:
        checkpointed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(stack_module, "checkpoint", counting_checkpoint)
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*RESUME_RUN), tmp_path / "unbroken")
    assert not checkpointed

    run = tmp_path / "checkpointed"
    first = record_losses(monkeypatch, stop_after=3)
    train(compose_config(*RESUME_RUN, "trainer.activation_checkpointing=true"), run)
    assert checkpointed
    second = record_losses(monkeypatch, stop_after=None)
    resumed = ("trainer.activation_checkpointing=true", "trainer.resume=auto")
    train(compose_config(*RESUME_RUN, *resumed), run)
    assert first + second == pytest.approx(unbroken, rel=1e-5, abs=1e-6)


def test_resume_true_with_no_checkpoint_starts_fresh(
    compose_config: Compose, tmp_path: Path
) -> None:
    train(compose_config("experiment=toy_reverse", "trainer.resume=true"), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == 4


def test_resume_from_a_different_model_names_the_keys(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(compose_config("experiment=toy_reverse"), run)
    saved = (run / "config.yaml").read_text()
    changed = compose_config(
        "experiment=toy_reverse", "model.d_ff=48", "activation=swiglu", "trainer.resume=auto"
    )
    with pytest.raises(
        ValueError, match=r"model\.activation.*model\.d_ff|model\.d_ff.*model\.activation"
    ):
        train(changed, run)
    assert (run / "config.yaml").read_text() == saved
    (run / "metrics.json").unlink()  # an unfinished run: refused by its checkpoint's config
    with pytest.raises(ValueError, match=r"model\.d_ff: checkpoint 64 vs now 48"):
        train(changed, run)
    assert (run / "config.yaml").read_text() == saved


def test_resume_from_a_weights_only_checkpoint_is_refused_before_anything_is_written(
    compose_config: Compose, tmp_path: Path
) -> None:
    train(compose_config("experiment=toy_reverse"), tmp_path / "run")
    full = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000004.pt")
    weights_only = tmp_path / "weights.pt"
    torch.save({key: full[key] for key in ("model", "config", "tokenizer")}, weights_only)
    resumed = compose_config("experiment=toy_reverse", f"trainer.resume={weights_only}")
    with pytest.raises(
        ValueError,
        match=r"trainer.resume: .*weights.pt is not a training checkpoint; it has no optimizer "
        r"state to resume from \(missing \['optimizer', 'scheduler', 'scaler', 'rng', 'trainer'\]\)",
    ):
        train(resumed, tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()


def test_failed_write_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save({"model": {"w": torch.ones(3)}, "config": "a: 1"}, step=1, is_best=True)

    def failing_save(obj: Any, handle: Any) -> None:
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        manager.save({"model": {"w": torch.zeros(3)}, "config": "a: 1"}, step=2, is_best=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "step_00000001.pt"]
    torch.testing.assert_close(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.ones(3))


def test_keeps_the_last_k_and_the_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 5):
        manager.save({"model": {}, "config": ""}, step=step, is_best=step == 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt",
        "step_00000003.pt",
        "step_00000004.pt",
    ]
    assert manager.latest() == tmp_path / "step_00000004.pt"


def test_missing_truncated_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(1000)}, "config": "x: 1"}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(ValueError, match=r"garbage\.pt is not a checkpoint \(not a file written"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(empty)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(ValueError, match="not a seq2seq checkpoint"):
        load_checkpoint(foreign)


def test_checkpoints_refuse_arbitrary_pickles(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save(
        {"model": {}, "config": "", "payload": CheckpointManager(tmp_path, keep_last=1)}, path
    )
    with pytest.raises(ValueError, match="objects other than tensors"):
        load_checkpoint(path)
