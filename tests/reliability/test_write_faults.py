"""A checkpoint that cannot be written (a full disk, a file-size limit) ends the run as a
runtime fault: one error line naming the file, the step, what to free or set and the
checkpoint to continue from, in train.log and metrics.json, exit status 1; the earlier
checkpoints are intact and `trainer.resume=auto` continues from them."""

from __future__ import annotations

import errno
import json
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

from seq2seq.jobs.train import run_training
from seq2seq.training import checkpoint
from seq2seq.training.write_fault import WRITE_ERROR

TIMEOUT = 240.0
FILE_SIZE_LIMIT = 700_000
"""Bytes: above the tiny run's other files (tokenizer, logs, events), below a checkpoint."""


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_file_size_limit_at_a_checkpoint_is_a_fault_with_advice_and_a_way_back(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    env = make_subprocess_env(tmp_path)
    run = tmp_path / "run"
    steps = ("trainer.max_steps=20", "trainer.eval_every=10")
    first = subprocess.run(train_command(tmp_path, *steps), env=env, capture_output=True)
    assert first.returncode == 0, first.stderr
    # Raised max_steps, a resume under a file-size limit: the checkpoint of step 30 fails.
    limited = subprocess.run(
        train_command(
            tmp_path, "trainer.max_steps=40", "trainer.eval_every=10", "trainer.resume=auto"
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limit_file_size,
    )
    assert limited.returncode == 1, limited.stderr
    assert "Traceback" not in limited.stdout + limited.stderr
    errors = [line for line in limited.stdout.splitlines() if "[ERROR]" in line]
    step_20 = run / "checkpoints" / "step_00000020.pt"
    expected = (
        f"cannot write {run / 'checkpoints' / 'step_00000030.pt'} at step 30: File too large; "
        "raise the file-size limit (ulimit -f) above "
    )
    assert len(errors) == 1 and expected in errors[0], limited.stdout
    assert f"continue from {step_20} with trainer.resume=auto" in errors[0]
    assert errors[0].split(" - ", 1)[1] in (run / "train.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == WRITE_ERROR
    assert metrics[WRITE_ERROR]["step"] == 30
    assert metrics[WRITE_ERROR]["resume_from"] == str(step_20)
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "step_00000010.pt",
        "step_00000020.pt",
    ]
    # Nothing was lost: without the limit the run continues from step 20 to its end.
    resumed = subprocess.run(
        train_command(
            tmp_path, "trainer.max_steps=40", "trainer.eval_every=10", "trainer.resume=auto"
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {step_20} at step 20" in resumed.stdout
    assert json.loads((run / "metrics.json").read_text())["stopped"] == "max_steps"


def test_a_full_disk_at_a_checkpoint_names_the_space_to_free(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC cannot be made here without a small file system: the second checkpoint's
    write fails as a full disk fails it, inside torch.save."""
    saves: list[Path] = []
    real_write = checkpoint.write_atomic

    def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
        saves.append(path)
        if len(saves) == 3:  # step 10's file, its best.pt, then step 20's file
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, write)

    monkeypatch.setattr(checkpoint, "write_atomic", write_atomic)
    cfg: DictConfig = compose_config(
        "experiment=toy_reverse",
        "model=tiny",
        "trainer.max_steps=30",
        "trainer.eval_every=10",
        "trainer.num_samples=0",
        "data.train_size=100",
        "data.validation_size=8",
        "data.test_size=8",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
    )
    run = tmp_path / "run"
    outcome = run_training(cfg, run)
    assert outcome.fault is not None
    assert outcome.fault.startswith(
        f"cannot write {run / 'checkpoints' / 'step_00000020.pt'} at step 20: No space left "
        "on device; free "
    )
    assert "MB or more on that file system (one checkpoint; trainer.keep_last=2 keeps 2" in (
        outcome.fault
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == WRITE_ERROR and metrics["step"] == 20
    assert "test" not in metrics  # the run did not finish: no test figures
