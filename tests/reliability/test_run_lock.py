"""One writer per run dir: a second `seq2seq-train` (or `seq2seq-average`) into a run dir
that a live process holds is refused in one line naming the dir and the holder, before it
writes anything; a dead process's lock is taken over with a warning; the lock goes at
every exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from seq2seq.training.run_lock import LOCK_NAME, RANK_VARIABLE, RunDirBusy, run_dir_lock

TIMEOUT = 240.0


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under `run_dir` with its size and modification time."""
    return {
        str(path.relative_to(run_dir)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in run_dir.rglob("*")
        if path.is_file()
    }


def test_a_second_run_into_a_held_run_dir_is_refused_and_the_first_goes_on(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    env = make_subprocess_env(tmp_path)
    run = tmp_path / "run"
    first = subprocess.Popen(
        train_command(tmp_path, "trainer.max_steps=100000", "trainer.resume=auto"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:  # training has started: files written, steps logged
            if "| loss" in line:
                break
        before = _snapshot(run)
        second = subprocess.run(
            train_command(tmp_path, "trainer.max_steps=100000", "trainer.resume=auto"),
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("seq2seq-train: error: the run dir ")
        assert str(run) in lines[0]
        assert f"process {first.pid} on host {socket.gethostname()}" in lines[0]
        assert "hydra.run.dir" in lines[0]
        assert "seq2seq" not in second.stdout  # nothing logged (into the first's train.log)
        after = _snapshot(run)
        # The second process wrote nothing: the files written since are the first's own.
        assert after[LOCK_NAME] == before[LOCK_NAME]
        assert all(
            name.startswith(("checkpoints", "tensorboard")) for name in set(after) - set(before)
        )
        first.send_signal(signal.SIGTERM)
        output = first.communicate(timeout=TIMEOUT)[0]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 128 + signal.SIGTERM, output
    assert not (run / LOCK_NAME).exists()
    train_log = (run / "train.log").read_text()
    assert train_log.count("model:") == 1  # one run's lines only
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "SIGTERM"


def _train_over_lock(
    tmp_path: Path,
    record: dict[str, object],
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> subprocess.CompletedProcess[str]:
    """A short training run into `tmp_path/run`, which holds a lock file of `record`."""
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps(record))
    return subprocess.run(
        train_command(tmp_path, "trainer.max_steps=5"),
        env=make_subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_a_dead_process_lock_is_taken_over_with_a_warning(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    run = tmp_path / "run"
    pid = _dead_pid()
    record = {"pid": pid, "host": socket.gethostname(), "since": "2026-01-01 00:00:00"}
    result = _train_over_lock(tmp_path, record, train_command, make_subprocess_env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if "took over the lock" in line]
    assert len(warnings) == 1 and f"process {pid}" in warnings[0], result.stdout
    assert json.loads((run / "metrics.json").read_text())["stopped"] == "max_steps"
    assert not (run / LOCK_NAME).exists()


def test_another_hosts_lock_is_not_taken_over(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    run = tmp_path / "run"
    record = {"pid": 1, "host": "another-node", "since": "2026-01-01 00:00:00"}
    result = _train_over_lock(tmp_path, record, train_command, make_subprocess_env)
    assert result.returncode == 2
    assert "process 1 on host another-node" in result.stderr
    assert f"remove {run / LOCK_NAME}" in result.stderr
    assert sorted(path.name for path in run.iterdir()) == [LOCK_NAME]


def _hold(run_dir: Path) -> subprocess.Popen[str]:
    """A process of this host that holds `run_dir` until it is killed."""
    code = (
        "import sys, time; from pathlib import Path\n"
        "from seq2seq.training.run_lock import run_dir_lock\n"
        "with run_dir_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_seq2seq_average_into_a_held_run_dir_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for step in (1, 2):
        (run / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"")
    holder = _hold(run)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "seq2seq.cli.average", str(run), "--last", "2"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert f"the run dir {run} is in use by process {holder.pid}" in result.stderr
    assert not (run / "checkpoints" / "average_last2.pt").exists()


def test_nested_locks_of_one_process_share_it_and_other_ranks_take_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    with run_dir_lock(run):
        with run_dir_lock(run):
            assert (run / LOCK_NAME).exists()
        assert (run / LOCK_NAME).exists()  # the outer hold goes on
        monkeypatch.setenv(RANK_VARIABLE, "1")
        with run_dir_lock(run):  # rank 1 writes nothing in the run dir: no lock
            pass
        monkeypatch.delenv(RANK_VARIABLE)
    assert not (run / LOCK_NAME).exists()
    holder = _hold(run)
    try:
        with pytest.raises(RunDirBusy, match=f"process {holder.pid} on host"), run_dir_lock(run):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert os.path.exists(run / LOCK_NAME)  # SIGKILL leaves the record; flock is gone
    with run_dir_lock(run):
        record = json.loads((run / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid()
