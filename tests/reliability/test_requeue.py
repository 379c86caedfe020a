"""Preemption on SLURM, run with submitit's local executor: SLURM's warning before the time
limit (SIGUSR2, here sent by the test) reaches a job that `hydra/launcher=submitit_local`
runs; the run finishes its step and checkpoints, submitit requeues the job, and the requeued
job continues from that checkpoint, although nobody typed `trainer.resume=auto` (one
warning line), ending with the losses of an unbroken run.

The sbatch recipe (scripts/slurm/train.sbatch), run with stand-ins for srun, scancel and
scontrol: on the warning the script gets, torchrun's processes checkpoint and stop, the
script requeues the job, and the requeued job (SLURM_RESTART_COUNT=1) finishes the run.

A job started again continues whatever `trainer.resume` says when SLURM (requeue) or
torchrun (restart) counts it, and only when there is a checkpoint to continue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seq2seq.jobs.ranks import restart_resume
from seq2seq.training.restarts import RESTART_COUNTERS
from seq2seq.training.run_lock import LOCK_NAME
from support.event_losses import train_losses

# Enough steps (over a second) that the signal lands long before the end, even under load.
MAX_STEPS = 120
EVAL_EVERY = 60
TIMEOUT = 240.0
STEP_LINE = re.compile(r"\bstep \d+ \|")
SBATCH = Path(__file__).parents[2] / "scripts" / "slurm" / "train.sbatch"
# Stand-ins for SLURM's commands on one host: srun runs its command here (recording its
# pid), scancel signals that process, scontrol names this host and records a requeue.
SLURM_STANDINS = {
    "srun": 'while [[ "$1" == --* ]]; do shift; done\necho $$ > "$STANDINS/srun.pid"\nexec "$@"',
    "scancel": 'echo "scancel $*" >> "$STANDINS/calls"\nkill -TERM "$(cat "$STANDINS/srun.pid")"',
    "scontrol": 'if [ "$1" = show ]; then echo localhost; else echo "scontrol $*" >> '
    '"$STANDINS/calls"; fi',
}


def _training_pid(job: Path, launcher: subprocess.Popen[str]) -> int:
    """The pid of the process training in `job` (its lock's holder), once train.log shows a
    training step: the stop handlers are installed by then."""
    deadline = time.monotonic() + TIMEOUT
    log = job / "train.log"
    while time.monotonic() < deadline and launcher.poll() is None:
        if log.is_file() and STEP_LINE.search(log.read_text(encoding="utf-8")):
            with contextlib.suppress(OSError, ValueError):
                return int(json.loads((job / LOCK_NAME).read_text())["pid"])
        time.sleep(0.05)
    raise AssertionError(f"no training step in {log} (launcher status {launcher.poll()})")


def _end_session(process: subprocess.Popen[str]) -> None:
    """End the launcher and what it started (submitit's controller and task), if any run."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="no SIGUSR2 on this platform")
def test_a_requeued_job_continues_where_slurm_s_warning_stopped_it(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the `sweep` extra
    limits = (f"trainer.max_steps={MAX_STEPS}", f"trainer.eval_every={EVAL_EVERY}")
    env = make_subprocess_env(tmp_path)
    sweep = tmp_path / "sweep"
    run = train_command(tmp_path, *limits)
    module_end = run.index("seq2seq.cli.train") + 1
    launcher = subprocess.Popen(
        [
            *run[:module_end],
            "--multirun",
            *run[module_end:],
            "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    job = sweep / "0"
    try:
        os.kill(_training_pid(job, launcher), signal.SIGUSR2)
        output, _ = launcher.communicate(timeout=TIMEOUT)
    finally:
        _end_session(launcher)
    task_logs = "".join(path.read_text() for path in sorted(sweep.glob(".submitit/*/*_log.*")))
    assert launcher.returncode == 0, output[-3000:] + task_logs[-3000:]
    assert "Requeued job" in task_logs, task_logs[-3000:]

    log = (job / "train.log").read_text(encoding="utf-8")  # both attempts' lines
    stop = re.search(r"SIGUSR2: stopped after step (\d+); checkpoint (\S+);", log)
    assert stop is not None, log[-3000:]
    step, checkpoint = int(stop.group(1)), Path(stop.group(2))
    assert 0 < step < MAX_STEPS and checkpoint == job / "checkpoints" / f"step_{step:08d}.pt"
    warnings = re.findall(r"\[WARNING\] - (.*this job was started again.*)", log)
    assert len(warnings) == 1, log[-3000:]
    assert (
        warnings[0].startswith("submitit job ")
        and f"continuing from {checkpoint} " in (warnings[0])
    )
    assert "trainer.resume=auto in place of trainer.resume=null" in warnings[0]
    assert f"resumed from {checkpoint} at step {step}" in log
    metrics = json.loads((job / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", MAX_STEPS)

    unbroken = subprocess.run(
        train_command(tmp_path / "unbroken", *limits),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert unbroken.returncode == 0, unbroken.stdout[-3000:] + unbroken.stderr[-3000:]
    expected = train_losses(tmp_path / "unbroken" / "run")
    assert [s for s, _ in expected] == list(range(1, MAX_STEPS + 1))
    assert train_losses(job) == expected  # every step once, with the unbroken run's loss


def _slurm_standins(directory: Path) -> dict[str, str]:
    """The stand-ins in `directory`, and the environment of a job (id 424242, one node)."""
    directory.mkdir()
    for name, body in SLURM_STANDINS.items():
        path = directory / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    return {
        "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}",
        "STANDINS": str(directory),
        "SLURM_JOB_ID": "424242",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "GPUS_PER_NODE": "2",
        "PYTHON": sys.executable,
    }


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="bash and SLURM: Linux")
def test_the_sbatch_recipe_checkpoints_requeues_and_finishes(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    standins = tmp_path / "standins"
    env = {**make_subprocess_env(tmp_path), **_slurm_standins(standins)}
    run = train_command(
        tmp_path, f"trainer.max_steps={MAX_STEPS}", f"trainer.eval_every={EVAL_EVERY}"
    )
    overrides = [
        arg for arg in run[run.index("seq2seq.cli.train") + 1 :] if "hydra.run.dir" not in arg
    ]
    job_log = tmp_path / "slurm-424242.out"
    with job_log.open("w") as output:
        job = subprocess.Popen(
            ["bash", str(SBATCH), *overrides],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while not STEP_LINE.search(job_log.read_text()) and job.poll() is None:
                assert time.monotonic() < deadline, job_log.read_text()[-3000:]
                time.sleep(0.05)
            job.send_signal(signal.SIGUSR2)  # SLURM's --signal=B:USR2@300
            assert job.wait(timeout=TIMEOUT) == 0, job_log.read_text()[-3000:]
        finally:
            _end_session(job)
    calls = (standins / "calls").read_text().splitlines()
    assert calls == ["scancel --signal=TERM 424242", "scontrol requeue 424242"], calls
    run_dir = tmp_path / "outputs" / "slurm" / "424242"
    stopped = json.loads((run_dir / "metrics.json").read_text())
    assert stopped["stopped"] == "SIGTERM" and stopped["step"] < MAX_STEPS, stopped

    # SLURM starts the requeued job with the same id and a restart count.
    requeued = subprocess.run(
        ["bash", str(SBATCH), *overrides],
        cwd=tmp_path,
        env={**env, "SLURM_RESTART_COUNT": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert requeued.returncode == 0, requeued.stdout[-3000:] + requeued.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoints'}" in requeued.stdout
    assert (standins / "calls").read_text().splitlines() == calls  # not requeued again
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", MAX_STEPS)
    steps = sorted(step for step, _ in train_losses(run_dir))
    assert steps == list(range(1, MAX_STEPS + 1))  # every step once, over both launches


@pytest.mark.parametrize("counter", RESTART_COUNTERS)
def test_a_counted_restart_continues_the_latest_checkpoint(
    counter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in RESTART_COUNTERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for step in (4, 8):
        (checkpoints / f"step_{step:08d}.pt").touch()

    def resume_of(setting: str | None) -> str | None:
        return restart_resume(
            OmegaConf.create({"trainer": {"resume": setting}}), tmp_path, job_id=None
        )

    monkeypatch.setenv(counter, "0")  # the job's first start
    assert resume_of(None) is None
    monkeypatch.setenv(counter, "2")
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        assert resume_of(None) == "auto"
        assert resume_of("false") == "auto"
        assert resume_of("auto") is None  # already continues: no warning
    assert [record.getMessage() for record in caplog.records] == [
        f"{counter}=2: this job was started again; continuing from "
        f"{checkpoints / 'step_00000008.pt'} (trainer.resume=auto in place of "
        f"trainer.resume={setting})"
        for setting in ("null", "false")
    ]
    # Nothing to continue yet (stopped before its first checkpoint): as the user set it.
    for path in checkpoints.iterdir():
        path.unlink()
    assert resume_of(None) is None
    assert resume_of("other/run") is None
