"""Two `torchrun` launches of one process each, started apart as two machines start them
(c10d rendezvous), train like one launch of two processes: the same losses in TensorBoard,
train.log and metrics.json, the same weights, in one run dir: rank 0's, although each
launch's Hydra named its own (the clocks read different days, hydra issue #2070), and the
other dir is gone afterwards. Rank 1's lines are on its console, not in train.log.

Two tasks of a submitit job (`hydra/launcher=slurm` with tasks_per_node=2, run by the local
executor) train like the same two torchrun processes. A sweep under torchrun is refused in
one line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.run_files import remove_stray_dir
from support.distributed_runs import (
    COMMON,
    SEQ2SEQ,
    free_port,
    train_processes,
    train_scalars,
    training_env,
)

TORCHRUN = (sys.executable, "-m", "torch.distributed.run")
TRAIN = ("-m", "seq2seq.cli.train", *SEQ2SEQ, *COMMON)
TIMEOUT = 300
STEP_LOSS = re.compile(r"\[seq2seq\.train\]\[INFO\] - step (\d+) \| loss (\S+) \|")
MODEL_LINE = "[seq2seq.train][INFO] - model: "


def _node(rank: int, endpoint: str, run_dir: Path, cache: Path) -> subprocess.Popen[str]:
    """One "machine": torchrun with one process, joining the two-node rendezvous."""
    return subprocess.Popen(
        [
            *TORCHRUN,
            "--nnodes=2",
            "--nproc-per-node=1",
            f"--node-rank={rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            *TRAIN,
            f"hydra.run.dir={run_dir}",
            f"tokenizer.cache_dir={cache}",
        ],
        cwd=run_dir.parents[2],  # the dir holding outputs/
        env=training_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finished(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-4000:]
    return output


def _step_losses(run_dir: Path) -> list[tuple[int, str]]:
    return [
        (int(step), loss)
        for step, loss in STEP_LOSS.findall((run_dir / "train.log").read_text(encoding="utf-8"))
    ]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one torchrun launch of two processes."""
    tmp = tmp_path_factory.mktemp("one-node")
    train_processes(tmp / "run", *TRAIN[2:], processes=2, cwd=tmp, timeout=TIMEOUT)
    return tmp / "run"


def _assert_same_training(run_dir: Path, reference: Path) -> None:
    """The same losses and gradient norms (TensorBoard), step lines (train.log, each step
    once: rank 0's alone), metrics.json and final weights as `reference`."""
    for tag in ("train/loss", "train/grad_norm"):
        expected = train_scalars(reference, tag)
        assert [step for step, _ in expected] == [1, 2, 3, 4], tag
        assert train_scalars(run_dir, tag) == expected, tag
    losses = _step_losses(reference)
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    assert _step_losses(run_dir) == losses
    train_log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert train_log.count(MODEL_LINE) == 1, train_log
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )
    one = load_checkpoint(reference / "checkpoints" / "step_00000004.pt")
    two = load_checkpoint(run_dir / "checkpoints" / "step_00000004.pt")
    assert len(two["rng"]) == len(one["rng"]) == 2
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_two_nodes_train_like_one_node_of_two_processes(tmp_path: Path, one_node: Path) -> None:
    # Each node's Hydra names its own dir, as `outputs/${now:...}` does a second apart.
    outputs = tmp_path / "outputs"
    node_dirs = [outputs / "2026-12-07" / "23-59-59", outputs / "2026-12-08" / "00-00-00"]
    endpoint = f"localhost:{free_port()}"
    cache = tmp_path / "cache"
    first = _node(0, endpoint, node_dirs[0], cache)
    time.sleep(1.0)  # the second machine starts later
    second = _node(1, endpoint, node_dirs[1], cache)
    outputs_of = [_finished(first), _finished(second)]

    # c10d ranks the nodes itself (by host and pid): one run dir, the rank 0 node's; the
    # other node's Hydra dir, and the date dir made for it, removed.
    kept = [index for index, run_dir in enumerate(node_dirs) if run_dir.exists()]
    assert len(kept) == 1, [path for path in outputs.rglob("*")]
    run_dir = node_dirs[kept[0]]
    assert [path.name for path in outputs.iterdir()] == [run_dir.parent.name]
    assert [path.name for path in run_dir.parent.iterdir()] == [run_dir.name]
    _assert_same_training(run_dir, one_node)
    assert MODEL_LINE in outputs_of[1 - kept[0]]  # rank 1's own lines: on its console


@pytest.mark.slow
def test_submitit_tasks_train_like_torchrun_processes(tmp_path: Path, one_node: Path) -> None:
    """`hydra/launcher=slurm` with tasks_per_node=2, run by submitit's local executor: the
    two tasks (submitit's variables, no torchrun's) train as one data-parallel run."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq.cli.train",
            "--multirun",
            *TRAIN[2:],
            "hydra/launcher=submitit_local",
            "hydra.launcher.tasks_per_node=2",
            f"hydra.sweep.dir={sweep}",
            f"tokenizer.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
        env=training_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    task_logs = "".join(path.read_text() for path in sorted(sweep.glob(".submitit/*/*_log.*")))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + task_logs
    _assert_same_training(sweep / "0", one_node)
    assert not (sweep / "1").exists()


def test_a_sweep_under_torchrun_is_refused_in_one_line(tmp_path: Path) -> None:
    """Every rank would run a sweep of its own. The refusal comes before any rank joins a
    process group, so torchrun's variables alone stand for the launch."""
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq.cli.train", "-m", "model=tiny", "norm=layernorm,rezero"],
        cwd=tmp_path,
        env=training_env({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "seq2seq-train: error: --multirun under torchrun (WORLD_SIZE=2) is not supported"
    ), lines[0]
    assert "hydra/launcher=slurm" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no sweep dir, no run dir


def test_a_stray_dir_goes_with_the_parents_made_for_it_alone(tmp_path: Path) -> None:
    """What rank 1 removes of the dir its Hydra made: empty dirs only, up to the parent it
    shares with rank 0's run dir (or none above it, when that is the filesystem root)."""
    outputs = tmp_path / "outputs"
    run_dir = outputs / "2026-12-07" / "23-59-59"
    run_dir.mkdir(parents=True)
    (run_dir / "train.log").touch()
    stray = outputs / "2026-12-08" / "00-00-00"
    stray.mkdir(parents=True)
    remove_stray_dir(stray, run_dir=run_dir)
    assert [path.name for path in outputs.iterdir()] == ["2026-12-07"]

    stray.mkdir(parents=True)
    (stray / "notes.txt").touch()  # not made by Hydra for this launch: kept
    remove_stray_dir(stray, run_dir=run_dir)
    assert (stray / "notes.txt").is_file()
    remove_stray_dir(run_dir, run_dir=run_dir)  # rank 0's own: never
    remove_stray_dir(outputs, run_dir=run_dir)  # a parent of rank 0's: never
    assert run_dir.is_dir()

    elsewhere = tmp_path / "scratch" / "run"  # shares only / with rank 0's run dir
    elsewhere.mkdir(parents=True)
    remove_stray_dir(elsewhere, run_dir=Path("/nonexistent-cluster-fs/run"))
    assert not elsewhere.exists() and elsewhere.parent.is_dir()
