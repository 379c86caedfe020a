"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from seq2seq.training.checkpoint import load_checkpoint

COMMON = (
    "experiment=toy_reverse",
    "model=tiny",
    "trainer.max_steps=4",
    "trainer.eval_every=4",
    "trainer.log_every=1",
    "trainer.progress=log",
    "schedule.warmup_steps=0",
    "data.train_size=200",
    "data.validation_size=8",
    "data.test_size=8",
    "data.max_len=8",
    # About 30 batches an epoch: 4 steps of 2 batches stay inside the first epoch, where
    # rank r's k-th batch is global batch 2k + r in both layouts.
    "data.max_tokens=64",
)


def _run(command: list[str], tmp_path: Path, run: str, *overrides: str) -> Path:
    run_dir = tmp_path / run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [
            *command,
            *COMMON,
            *overrides,
            f"hydra.run.dir={run_dir}",
            f"tokenizer.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path) -> None:
    module = [sys.executable, "-m"]
    single = _run([*module, "seq2seq.cli.train"], tmp_path, "single", "trainer.grad_accum=2")
    ddp = _run(
        [
            *module,
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "seq2seq.cli.train",
        ],
        tmp_path,
        "ddp",
    )
    one = load_checkpoint(single / "checkpoints" / "step_00000004.pt")
    two = load_checkpoint(ddp / "checkpoints" / "step_00000004.pt")
    assert len(two["rng"]) == 2 and len(one["rng"]) == 1
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["stopped"] == "max_steps"
    # Rank 0 alone wrote the run's outputs: one event file, one set of checkpoints.
    assert len(list((ddp / "tensorboard").glob("events.*"))) == 1
