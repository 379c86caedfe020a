"""What a resumed run may change and what it may not: the optimizer's settings take effect,
its kind and the monitored figure are refused, and checkpoints the continued run did not
lead to (later steps, another run) are refused rather than pruned or mistaken for its own."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.atomic import write_json_atomic
from seq2seq.config.schema import TrainConfig
from seq2seq.jobs.train import train
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.resume import check_resumable
from seq2seq.training.schedule import lr_multiplier
from seq2seq.training.state import Monitor
from seq2seq.training.trainer import Trainer

Compose = Callable[..., DictConfig]

RUN = ("experiment=toy_reverse", "trainer.max_steps=4", "trainer.eval_every=2")
ORIGINAL_TRAIN_STEP = Trainer.train_step


def _finished_run(compose_config: Compose, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    train(compose_config(*RUN), run)
    return run


def _logged(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_a_resume_trains_with_the_optimizer_settings_configured_now(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _finished_run(compose_config, tmp_path)
    seen: list[dict[str, Any]] = []

    def train_step(self: Trainer, group: Any) -> dict[str, float] | None:
        seen.append({k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"})
        return ORIGINAL_TRAIN_STEP(self, group)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    resumed = compose_config(
        *RUN,
        "trainer.max_steps=8",
        "optim.lr=0.02",
        "optim.weight_decay=0.3",
        "optim.betas=[0.8,0.9]",
        "trainer.resume=auto",
    )
    train(resumed, run)
    cfg: TrainConfig = OmegaConf.to_object(resumed)  # type: ignore[assignment]
    assert len(seen) == 4
    assert seen[0]["weight_decay"] == 0.3 and tuple(seen[0]["betas"]) == (0.8, 0.9)
    for step, settings in enumerate(seen, start=5):
        assert settings["lr"] == pytest.approx(
            0.02 * lr_multiplier(step, cfg.schedule, max_steps=8)
        )
    # The saved moments were kept: Adam's step count goes on from 4.
    state = load_checkpoint(run / "checkpoints" / "step_00000008.pt")["optimizer"]["state"]
    assert float(next(iter(state.values()))["step"]) == 8


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.name=sgd", r"optim\.name: checkpoint 'adamw' vs now 'sgd'"),
        ("trainer.monitor=cer", r"trainer\.monitor: checkpoint 'exact_match' vs now 'cer'"),
    ],
    ids=["optimizer-kind", "monitor"],
)
def test_a_resume_refuses_another_optimizer_kind_or_monitor(
    compose_config: Compose, tmp_path: Path, override: str, message: str
) -> None:
    run = _finished_run(compose_config, tmp_path)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    for finished in (True, False):  # refused by config.yaml, then by the checkpoint
        if not finished:
            (run / "metrics.json").unlink()
            del before[run / "metrics.json"]
        resumed = compose_config(*RUN, "trainer.max_steps=8", override, "trainer.resume=auto")
        with pytest.raises(ValueError, match=message):
            train(resumed, run)
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_resume_may_use_another_tokenizer_cache(compose_config: Compose, tmp_path: Path) -> None:
    run = _finished_run(compose_config, tmp_path)
    resumed = compose_config(
        *RUN,
        "trainer.max_steps=6",
        f"tokenizer.cache_dir={tmp_path / 'elsewhere'}",
        "trainer.resume=auto",
    )
    train(resumed, run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 6


def test_resuming_an_earlier_step_beside_later_checkpoints_is_refused(
    compose_config: Compose, tmp_path: Path
) -> None:
    """keep_last would prune the continued run's own newest file (it keeps the highest
    steps), and trainer.resume=auto would later pick the abandoned branch."""
    run = _finished_run(compose_config, tmp_path)
    older = run / "checkpoints" / "step_00000002.pt"
    with pytest.raises(
        ValueError,
        match=r"continues step 2, but .*checkpoints holds checkpoints of later steps of that "
        r"run \(step_00000004\.pt(, best\.pt)?\); move them out of the way first",
    ):
        train(compose_config(*RUN, "trainer.max_steps=8", f"trainer.resume={older}"), run)
    assert not (run / "checkpoints" / "step_00000006.pt").exists()
    # best.pt of a later step alone is refused too: it would be tested as this run's best.
    shutil.copyfile(run / "checkpoints" / "step_00000004.pt", run / "checkpoints" / "best.pt")
    (run / "checkpoints" / "step_00000004.pt").unlink()
    with pytest.raises(ValueError, match=r"checkpoints of later steps of that run \(best\.pt\)"):
        train(compose_config(*RUN, "trainer.max_steps=8", f"trainer.resume={older}"), run)
    # Into another run's dir: its checkpoints are not this run's either.
    other = tmp_path / "other"
    train(compose_config(*RUN), other)
    with pytest.raises(ValueError, match=r"holds checkpoints of another run \(step_00000002\.pt"):
        train(compose_config(*RUN, f"trainer.resume={older}"), other)
    # Once they are moved away, it continues from step 2.
    for path in (run / "checkpoints").glob("*"):
        if path != older:
            path.unlink()
    (run / "metrics.json").unlink()
    train(compose_config(*RUN, "trainer.max_steps=6", f"trainer.resume={older}"), run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 6


def test_a_resume_after_patience_ran_out_does_not_train_on(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its early stop, before metrics.json: it stays stopped."""
    run = _finished_run(compose_config, tmp_path)
    path = run / "checkpoints" / "step_00000004.pt"
    checkpoint = load_checkpoint(path)
    checkpoint["trainer"]["evals_without_improvement"] = 2
    torch.save(checkpoint, path)
    (run / "metrics.json").unlink()
    steps: list[int] = []
    monkeypatch.setattr(
        Trainer,
        "train_step",
        lambda self, group: steps.append(1) or ORIGINAL_TRAIN_STEP(self, group),
    )
    train(
        compose_config(*RUN, "trainer.max_steps=8", "trainer.patience=2", "trainer.resume=auto"),
        run,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"], steps) == ("early_stopping", 4, [])
    assert "test" in metrics


def test_a_run_stopped_early_trains_on_with_more_patience(
    compose_config: Compose, tmp_path: Path
) -> None:
    """An absurd learning rate makes the loss rise: patience 1 stops at the first
    validation that does not improve; resumed with a larger patience, it trains on."""
    run = tmp_path / "run"
    rising = (
        *RUN,
        "trainer.max_steps=40",
        "trainer.monitor=loss",
        "optim.lr=5.0",
        "schedule=constant",
    )
    train(compose_config(*rising, "trainer.patience=1"), run)
    first = json.loads((run / "metrics.json").read_text())
    assert first["stopped"] == "early_stopping"
    train(compose_config(*rising, "trainer.patience=1", "trainer.resume=auto"), run)
    assert json.loads((run / "metrics.json").read_text()) == first  # finished: not again
    train(compose_config(*rising, "trainer.patience=3", "trainer.resume=auto"), run)
    second = json.loads((run / "metrics.json").read_text())
    assert second["step"] > first["step"]
    assert second["stopped"] in ("early_stopping", "max_steps")


def test_a_resume_after_a_crash_draws_each_step_once(
    compose_config: Compose, tmp_path: Path
) -> None:
    """Steps 3 and 4 were logged, then the run died before step 4's checkpoint: the
    resumed run logs them again, and TensorBoard shows the new values only."""
    run = _finished_run(compose_config, tmp_path)
    checkpoints = run / "checkpoints"
    if load_checkpoint(checkpoints / "best.pt")["trainer"]["step"] == 4:
        shutil.copyfile(checkpoints / "step_00000002.pt", checkpoints / "best.pt")
    (checkpoints / "step_00000004.pt").unlink()
    (run / "metrics.json").unlink()
    first = _logged(run, "train/loss")
    # TensorBoard reads a run's event files in name order; the names start with the time in
    # whole seconds, which must differ as between two launches.
    time.sleep(1.1)
    train(compose_config(*RUN, "trainer.resume=auto"), run)
    logged = _logged(run, "train/loss")
    assert [step for step, _ in logged] == [1, 2, 3, 4]
    assert logged[:2] == first[:2]


def test_a_nan_validation_figure_is_never_the_best() -> None:
    lower = Monitor("loss", higher_is_better=False)
    assert not lower.improved(math.nan, None)
    assert lower.improved(0.5, None) and lower.improved(0.4, 0.5)
    assert not Monitor("bleu", higher_is_better=True).improved(math.inf, 3.0)


def test_metrics_json_is_strict_json(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json_atomic({"best": {"loss": math.nan}, "figures": [1.0, math.inf]}, path)
    assert json.loads(path.read_text(), parse_constant=pytest.fail) == {
        "best": {"loss": None},
        "figures": [1.0, None],
    }


def test_a_resume_with_other_batches_restarts_the_epoch_and_says_so(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _finished_run(compose_config, tmp_path)
    saved = load_checkpoint(run / "checkpoints" / "step_00000004.pt")
    assert saved["trainer"]["epoch_batches"] > 0  # stopped inside an epoch
    assert saved["batch_layout"]["max_tokens"] == 256
    train(compose_config(*RUN, "trainer.max_steps=5", "trainer.resume=auto"), run)
    assert "training batches differ" not in caplog.text
    resumed = compose_config(
        *RUN, "trainer.max_steps=6", "data.max_tokens=512", "trainer.resume=auto"
    )
    train(resumed, run)
    assert (
        "the training batches differ from the checkpoint's (max_tokens 256 -> 512): epoch "
        in caplog.text
    )
    assert json.loads((run / "metrics.json").read_text())["step"] == 6


def test_a_resume_refused_late_leaves_the_run_as_it_was(
    compose_config: Compose, tmp_path: Path
) -> None:
    """Refused once the data is ready (no batch fits data.max_tokens): config.yaml, .hydra/
    and the tokenizers are written only after every check."""
    run = _finished_run(compose_config, tmp_path)
    (run / "metrics.json").unlink()
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    resumed = compose_config(
        *RUN, "trainer.max_steps=8", "data.max_tokens=6", "trainer.resume=auto"
    )
    with pytest.raises(ValueError, match=r"data\.max_tokens=6 is smaller than example"):
        train(resumed, run)
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_checkpoint_of_another_number_of_processes_is_refused(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = _finished_run(compose_config, tmp_path)
    checkpoint = load_checkpoint(run / "checkpoints" / "step_00000004.pt")
    check_resumable(checkpoint, run, world_size=1)
    with pytest.raises(ValueError, match=r"written by 1 processes but this run has 2; resume"):
        check_resumable(checkpoint, run, world_size=2)


def test_a_run_that_ran_out_of_epochs_trains_on_with_more(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    epochs = (*RUN, "trainer.max_steps=1000", "trainer.eval_every=1000")
    train(compose_config(*epochs, "trainer.max_epochs=1"), run)
    first = json.loads((run / "metrics.json").read_text())
    assert first["stopped"] == "max_epochs"
    train(compose_config(*epochs, "trainer.max_epochs=1", "trainer.resume=auto"), run)
    assert json.loads((run / "metrics.json").read_text()) == first  # finished: not again
    train(compose_config(*epochs, "trainer.max_epochs=2", "trainer.resume=auto"), run)
    second = json.loads((run / "metrics.json").read_text())
    assert second["stopped"] == "max_epochs"
    assert first["step"] < second["step"] <= 2 * first["step"] + 1
