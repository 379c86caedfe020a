"""Resuming through `train()`: broken or missing checkpoints fail clearly before any data is
loaded, and a finished run re-launched with `trainer.resume=auto` (a sweep re-run) is not
trained again."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.schema import TrainConfig
from seq2seq.data.prepare import load_raw_splits
from seq2seq.data.tokenization import build_tokenizers
from seq2seq.jobs.train import train
from seq2seq.training.trainer import Trainer

Compose = Callable[..., DictConfig]


def _truncated_checkpoint(path: Path) -> Path:
    """A checkpoint-shaped file cut in half, as a full disk or a killed copy leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.randn(4096)}, "config": "model: {}\n"}, path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def test_resume_from_a_truncated_file_is_a_clear_error(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    broken = _truncated_checkpoint(tmp_path / "saved" / "step_00000004.pt")
    cfg = compose_config("experiment=toy_reverse", f"trainer.resume={broken}")
    with pytest.raises(
        ValueError, match=rf"checkpoint {re.escape(str(broken))} is truncated or corrupt"
    ):
        train(cfg, tmp_path / "run")
    assert not block_data


def test_resume_auto_onto_a_truncated_latest_checkpoint_names_it(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    run = tmp_path / "run"
    broken = _truncated_checkpoint(run / "checkpoints" / "step_00000004.pt")
    cfg = compose_config("experiment=toy_reverse", "trainer.resume=auto")
    with pytest.raises(
        ValueError, match=rf"checkpoint {re.escape(str(broken))} is truncated or corrupt"
    ):
        train(cfg, run)
    assert not block_data


def test_resume_from_a_missing_path_names_trainer_resume(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    missing = tmp_path / "saved" / "step_00000004.pt"
    cfg = compose_config("experiment=toy_reverse", f"trainer.resume={missing}")
    with pytest.raises(
        FileNotFoundError,
        match=rf"trainer\.resume='{re.escape(str(missing))}': no such checkpoint file; use auto",
    ):
        train(cfg, tmp_path / "run")
    assert not block_data


def test_resume_from_a_directory_names_trainer_resume(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    cfg = compose_config("experiment=toy_reverse", f"trainer.resume={tmp_path}")
    with pytest.raises(
        FileNotFoundError,
        match=r"trainer\.resume=.*: a directory with no step checkpoint in it or in its "
        r"checkpoints/; use auto, a run dir, or a \.pt file",
    ):
        train(cfg, tmp_path / "run")
    assert not block_data


def test_resume_from_another_run_dir_continues_its_latest_checkpoint(
    compose_config: Compose,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="seq2seq.train")
    train(compose_config(*FINISHED_RUN), tmp_path / "first")
    steps = _count_steps(monkeypatch)
    cfg = compose_config(
        *FINISHED_RUN, "trainer.max_steps=4", f"trainer.resume={tmp_path / 'first'}"
    )
    train(cfg, tmp_path / "second")
    assert steps == [3, 4]
    # The best it carried on from came along: the new dir's best.pt is its best step.
    best = torch.load(tmp_path / "second" / "checkpoints" / "best.pt", weights_only=True)
    metrics = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert best["trainer"]["step"] == metrics["best"]["step"]
    assert f"copied {tmp_path / 'first' / 'checkpoints' / 'best.pt'} (step 2)" in caplog.text


# --- a finished run in a sweep ------------------------------------------------------------

FINISHED_RUN = (
    "experiment=toy_reverse",
    "trainer.max_steps=2",
    "trainer.eval_every=2",
    "data.validation_size=4",
    "data.test_size=4",
)


def _count_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    steps: list[int] = []
    original = Trainer.train_step

    def train_step(self: Trainer, group: Any) -> dict[str, float]:
        figures = original(self, group)
        steps.append(self.state.step)
        return figures

    monkeypatch.setattr(Trainer, "train_step", train_step)
    return steps


def _snapshot(run: Path, *, config: bool = False) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and (config or p.name != "config.yaml")
    }


def test_a_finished_run_is_not_trained_again(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    objective = train(compose_config(*FINISHED_RUN), run)
    before = _snapshot(run)
    assert json.loads((run / "metrics.json").read_text())["stopped"] == "max_steps"

    steps = _count_steps(monkeypatch)
    again = train(compose_config(*FINISHED_RUN, "trainer.resume=auto"), run)
    assert steps == []
    assert again == pytest.approx(objective, nan_ok=True)
    # No new event file, checkpoint, prediction or metrics: the run dir is as it was.
    assert _snapshot(run) == before


def test_a_finished_run_resumed_with_more_steps_trains_on(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run)
    steps = _count_steps(monkeypatch)
    train(compose_config(*FINISHED_RUN, "trainer.max_steps=4", "trainer.resume=auto"), run)
    assert steps == [3, 4]
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", 4)


def test_a_finished_run_asked_for_with_a_lower_max_steps_is_not_trained_again(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    objective = train(compose_config(*FINISHED_RUN), run)
    before = _snapshot(run)
    steps = _count_steps(monkeypatch)
    again = train(compose_config(*FINISHED_RUN, "trainer.max_steps=1", "trainer.resume=auto"), run)
    assert steps == []
    assert again == pytest.approx(objective, nan_ok=True)
    assert _snapshot(run) == before


def test_a_finished_run_is_not_the_result_of_other_settings(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep rerun into its old dir with another value must not return the old figure."""
    run = tmp_path / "run"
    cfg = compose_config(*FINISHED_RUN)
    train(cfg, run)
    before = _snapshot(run, config=True)
    lr = cfg.optim.lr
    with pytest.raises(
        ValueError,
        match=rf"holds a finished run with other settings \(optim\.lr: finished with {lr} vs "
        r"now 0\.0123\); its result is not this config's: train into another hydra\.run\.dir",
    ):
        train(compose_config(*FINISHED_RUN, "optim.lr=0.0123", "trainer.resume=auto"), run)
    assert _snapshot(run, config=True) == before
    # How it is run or reported is not part of its result.
    steps = _count_steps(monkeypatch)
    train(
        compose_config(
            *FINISHED_RUN, "trainer.resume=auto", "trainer.log_every=7", "trainer.threads=1"
        ),
        run,
    )
    assert steps == []


def test_resuming_a_run_killed_before_metrics_json_restores_the_final_figures(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run)
    before = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    train(compose_config(*FINISHED_RUN, "trainer.resume=auto"), run)
    after = json.loads((run / "metrics.json").read_text())
    assert (after["stopped"], after["step"]) == ("max_steps", 2)
    assert after["final_validation"] == pytest.approx(before["final_validation"])


# --- what an earlier run wrote stays as it was ---------------------------------------------


def test_a_fresh_run_into_a_run_dir_with_checkpoints_is_refused(
    compose_config: Compose, tmp_path: Path
) -> None:
    """Without `trainer.resume`, training into an earlier run's dir would overwrite its
    best.pt and prune its step checkpoints; nor may it replace the earlier run's record
    of its launch (.hydra/, as seq2seq-train passes it)."""
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run, hydra_files={"overrides.yaml": "- first\n"})
    assert (run / ".hydra" / "overrides.yaml").read_text() == "- first\n"
    before = _snapshot(run, config=True)
    with pytest.raises(
        ValueError,
        match=r"already holds checkpoints of an earlier run \(step_00000002\.pt, best\.pt\); "
        r"continue it with trainer\.resume=auto, or train into another hydra\.run\.dir",
    ):
        train(
            compose_config(*FINISHED_RUN, "trainer.max_steps=4"),
            run,
            hydra_files={"overrides.yaml": "- refused\n"},
        )
    assert _snapshot(run, config=True) == before


def test_a_resume_on_changed_data_keeps_the_checkpoints_tokenizers(
    compose_config: Compose, tmp_path: Path
) -> None:
    """The weights belong to the token ids they were trained with: a resumed run on other
    data tokenizes it with the checkpoint's tokenizers, not new ones trained on it."""
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run)
    tokenizers = _snapshot(run / "tokenizer")
    changed = compose_config(
        *FINISHED_RUN, "data.num_symbols=5", "trainer.max_steps=4", "trainer.resume=auto"
    )
    # Trained on the changed data, the tokenizers would differ.
    changed_cfg: TrainConfig = OmegaConf.to_object(changed)  # type: ignore[assignment]
    fresh = build_tokenizers(
        load_raw_splits(changed_cfg.data, seed=changed_cfg.seed)["train"],
        shared=changed_cfg.tokenizer.shared,
        model_type=changed_cfg.tokenizer.model_type,  # type: ignore[arg-type]
        vocab_size=changed_cfg.tokenizer.vocab_size,
        character_coverage=changed_cfg.tokenizer.character_coverage,
        cache_dir=tmp_path / "fresh-cache",
    )
    assert fresh[0].model_proto != tokenizers["source.model"]

    train(changed, run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 4
    assert _snapshot(run / "tokenizer") == tokenizers
    stored = torch.load(run / "checkpoints" / "step_00000004.pt", weights_only=True)
    assert stored["tokenizer"]["source"].numpy().tobytes() == tokenizers["source.model"]


def test_a_resume_whose_data_fails_leaves_the_run_as_it_was(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run)
    before = _snapshot(run, config=True)
    broken = compose_config(
        *FINISHED_RUN, "data.max_source_len=2", "trainer.max_steps=4", "trainer.resume=auto"
    )
    with pytest.raises(ValueError, match=r"the train split has no usable example left"):
        train(broken, run)
    assert _snapshot(run, config=True) == before


def test_resume_auto_beside_a_lone_best_checkpoint_says_there_is_nothing_to_continue(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(compose_config(*FINISHED_RUN), run)
    for path in (run / "checkpoints").glob("step_*.pt"):
        path.unlink()
    (run / "metrics.json").unlink()
    with pytest.raises(
        ValueError,
        match=r"holds best\.pt but no step checkpoint to continue from; move it out of the "
        r"way, or train into another hydra\.run\.dir",
    ):
        train(compose_config(*FINISHED_RUN, "trainer.resume=auto"), run)
    assert (run / "checkpoints" / "best.pt").is_file()


def test_a_corrupt_latest_checkpoint_names_the_newest_intact_one_and_the_command_works(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """Asking for the previous checkpoint was refused (later ones exist) and the advice
    `trainer.resume=auto` led back to the corrupt one: the refusal now names the way on."""
    env = make_subprocess_env(tmp_path)
    checkpoints = tmp_path / "run" / "checkpoints"
    first = subprocess.run(
        train_command(tmp_path, "trainer.max_steps=30", "trainer.eval_every=10"),
        env=env,
        capture_output=True,
    )
    assert first.returncode == 0, first.stderr
    latest = checkpoints / "step_00000030.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a copy cut short
    more = ("trainer.max_steps=40", "trainer.eval_every=10")
    refused = subprocess.run(
        train_command(tmp_path, *more, "trainer.resume=auto"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    intact = checkpoints / "step_00000020.pt"
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"seq2seq-train: error: checkpoint {latest} is truncated or corrupt")
    advice = f"continue from it with trainer.resume={intact} and the same hydra.run.dir"
    assert f"the newest intact checkpoint is {intact}: {advice}" in line
    resumed = subprocess.run(
        train_command(tmp_path, *more, f"trainer.resume={intact}"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from {intact} at step 20" in resumed.stdout
    assert f"kept as {latest}.corrupt" in resumed.stdout
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "best.pt",
        "step_00000030.pt",
        "step_00000030.pt.corrupt",
        "step_00000040.pt",
    ]
