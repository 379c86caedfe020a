"""Subprocess trainings under torchrun and what the tests compare between them: the tiny
run's overrides, the environment, a free port, the TensorBoard scalars and the step lines
of train.log."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# About 30 batches an epoch of toy_reverse with data.max_tokens=64: 4 steps of 2 batches
# stay inside the first epoch, where rank r's k-th batch is global batch 2k + r whatever the
# number of processes.
COMMON = (
    "model=tiny",
    "trainer.max_steps=4",
    "trainer.eval_every=4",
    "trainer.log_every=1",
    "trainer.progress=log",
    "schedule.warmup_steps=0",
    "data.train_size=200",
    "data.validation_size=8",
    "data.test_size=8",
    # Clipping to a norm would give the first step's gradients that norm whatever their
    # scale; without it the recorded gradients are the ones DDP all-reduced.
    "trainer.clip_norm=0",
)
SEQ2SEQ = ("experiment=toy_reverse", "data.max_len=8", "data.max_tokens=64")
"""The seq2seq task's part of the tiny run."""
STEP_LINE = re.compile(r"\]\[seq2seq\.train\]\[INFO\] - (step \d+ \|.*)$", re.MULTILINE)
"""A training step's log line (`step 3 | loss ...`), without its time stamp."""


def training_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """One thread per process, unbuffered output."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def free_port() -> int:
    """A TCP port of this host nothing listens on (for a rendezvous or master port)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def train_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) of `tag` in the run's TensorBoard events."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def logged_steps(run_dir: Path) -> list[str]:
    """The training step lines of the run's train.log, in order, without time stamps."""
    return STEP_LINE.findall((run_dir / "train.log").read_text(encoding="utf-8"))


def train_processes(
    run_dir: Path,
    *overrides: str,
    processes: int = 2,
    cwd: Path,
    timeout: float = 300,
    entry: Sequence[str] = ("-m", "seq2seq.cli.train"),
    env: Mapping[str, str] | None = None,
    status: int = 0,
) -> Path:
    """seq2seq-train (or the script `entry` names) into `run_dir` on `processes` CPU
    processes (torchrun's --standalone picks a free port; one process runs without
    torchrun), the tokenizer cache under `cwd`; fails the test, with the output's end, on
    an exit status other than `status`."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    result = subprocess.run(
        [
            *launcher,
            *entry,
            *overrides,
            f"hydra.run.dir={run_dir}",
            f"tokenizer.cache_dir={cwd / 'cache'}",
        ],
        cwd=cwd,
        env=training_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == status, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir
