"""torchrun with 2 CPU processes (gloo) equals one process with the same global batch.

Final weights after AdamW hide the scale of the gradients (Adam divides it out), so the
runs are also compared step by step: the logged losses and gradient norms of every
step, and the gradients of the first step themselves, recorded by
`record_first_gradients.py` (an optimizer hook around seq2seq-train) on every rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.logger import HPARAMS_SUFFIX
from support.distributed_runs import COMMON, SEQ2SEQ, train_scalars

RECORDER = Path(__file__).with_name("record_first_gradients.py")

# 4 steps of 2 batches stay inside the first epoch (support.distributed_runs.COMMON).
TASKS = {
    "seq2seq": SEQ2SEQ,
    "language_modeling": (
        "experiment=lm_dyck",
        "data.max_len=12",
        "data.block_size=16",
        "data.max_tokens=32",
        "trainer.sampled_documents=8",
    ),
}
PORTS = {"seq2seq": 29517, "language_modeling": 29518}


def _run(command: list[str], tmp_path: Path, run: str, *overrides: str) -> Path:
    """Train in `<tmp_path>/<run>`; the first step's gradients go to its `gradients/`."""
    run_dir = tmp_path / run
    (run_dir / "gradients").mkdir(parents=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "RECORD_GRADIENTS_DIR": str(run_dir / "gradients"),
    }
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


def _labelled(label: str) -> Callable[[str], str]:
    """An `assert_close` message that names what differs."""
    return lambda message: f"{label}: {message}"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path: Path, task: str) -> None:
    overrides = TASKS[task]
    single = _run(
        [sys.executable, str(RECORDER)], tmp_path, "single", *overrides, "trainer.grad_accum=2"
    )
    ddp = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={PORTS[task]}",
            str(RECORDER),
        ],
        tmp_path,
        "ddp",
        *overrides,
    )

    # Every step's loss and gradient norm (measured on the all-reduced gradients).
    for tag in ("train/loss", "train/grad_norm"):
        one_steps, two_steps = train_scalars(single, tag), train_scalars(ddp, tag)
        assert [step for step, _ in one_steps] == [1, 2, 3, 4], tag
        assert [step for step, _ in two_steps] == [1, 2, 3, 4], tag
        torch.testing.assert_close(
            torch.tensor([value for _, value in two_steps], dtype=torch.float64),
            torch.tensor([value for _, value in one_steps], dtype=torch.float64),
            rtol=1e-5,
            atol=0.0,
            msg=_labelled(tag),
        )

    # The first step's gradients: every rank holds the single process's.
    expected = torch.load(single / "gradients" / "rank0.pt")
    assert sum(grad is not None for grad in expected) > 10
    for rank in (0, 1):
        found = torch.load(ddp / "gradients" / f"rank{rank}.pt")
        assert len(found) == len(expected)
        for index, (got, want) in enumerate(zip(found, expected, strict=True)):
            if want is None:
                assert got is None, (rank, index)
                continue
            torch.testing.assert_close(
                got,
                want,
                rtol=1e-4,
                atol=1e-6,
                msg=_labelled(f"rank {rank}, gradient {index}"),
            )

    one = load_checkpoint(single / "checkpoints" / "step_00000004.pt")
    two = load_checkpoint(ddp / "checkpoints" / "step_00000004.pt")
    assert len(two["rng"]) == 2 and len(one["rng"]) == 1
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["stopped"] == "max_steps"
    # Rank 0 alone wrote the run's outputs: one event file (and its HParams row), one set
    # of checkpoints.
    events = [path.name for path in (ddp / "tensorboard").glob("events.*")]
    assert sorted(name.endswith(HPARAMS_SUFFIX) for name in events) == [False, True], events
