"""One writer per run dir: a lock file (`<run dir>/.lock`) taken before a run writes
anything, naming the process that holds it, and released at every exit.

The exclusion itself is `flock` on the file, which the kernel releases when its holder
dies however it dies; the pid and host written in it are for the message a second
process gets, and for a file system where `flock` does not reach other hosts (a record
of another host's process is never taken over). A record left by a dead process of
this host (SIGKILL) is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seq2seq.atomic import process_running
from seq2seq.writable import directory_problem

log = logging.getLogger("seq2seq.train")

LOCK_NAME = ".lock"
RANK_VARIABLE = "RANK"
"""torchrun's global rank: only rank 0 writes the run dir, so only it takes the lock."""

_held: dict[Path, int] = {}
"""Locks this process holds (path -> nesting depth): the CLI and the job it calls both
take the lock of one run dir."""


class RunDirBusy(OSError):
    """Another process holds the run dir: a usage error, refused before anything is written."""


def _record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _holder(record: dict[str, Any]) -> str:
    if not record:
        return "another process"
    # The command is in the file, for whoever wants it; one line stays readable without.
    return f"process {record.get('pid')} on host {record.get('host')} (since {record.get('since')})"


def _busy(run_dir: Path, record: dict[str, Any], setting: str, *, advice: str = "") -> RunDirBusy:
    return RunDirBusy(
        f"the run dir {run_dir} is in use by {_holder(record)}: one run dir has one writer; "
        f"wait for it to end{advice}, or choose another {setting}"
    )


def _open_locked(path: Path) -> int | None:
    """A descriptor of `path` holding its flock, or None when another process holds it.
    Retried when the file was replaced between opening and locking (its holder removed it
    on release), so the lock is always on the file the path names."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _take_over(run_dir: Path, fd: int, setting: str) -> None:
    """Refuse a record of a live process (or of another host's); warn over a dead one's."""
    record = _read(fd)
    if not record:
        return
    pid, host = record.get("pid"), record.get("host")
    if host != socket.gethostname():
        raise _busy(
            run_dir,
            record,
            setting,
            advice=f" (if it no longer runs, remove {run_dir / LOCK_NAME})",
        )
    if isinstance(pid, int) and pid != os.getpid() and process_running(pid):
        raise _busy(run_dir, record, setting)
    log.warning(
        "took over the lock of %s in %s: that process no longer runs (it was killed)",
        _holder(record),
        run_dir,
    )


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, *, setting: str = "hydra.run.dir") -> Iterator[None]:
    """Hold `run_dir` for this process (made if missing); `RunDirBusy` if another holds it,
    an OSError naming `setting` if it cannot be written.

    Under torchrun only rank 0 locks (the other ranks write nothing there). Nested calls
    for one run dir in one process share the lock. `setting`: what the user sets to
    choose another run dir, named in the refusal."""
    if int(os.environ.get(RANK_VARIABLE, "0")) != 0:
        yield
        return
    problem = directory_problem(run_dir)
    if problem is not None:
        raise OSError(
            f"the run dir {run_dir} ({setting}) cannot be written: {problem}; set {setting} "
            "to a writable directory"
        )
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / LOCK_NAME).absolute()
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fd = _open_locked(path)
    if fd is None:
        raise _busy(run_dir, _read_file(path), setting)
    try:
        _take_over(run_dir, fd, setting)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(_record()) + "\n").encode("utf-8"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    _held[path] = 1
    try:
        yield
    finally:
        del _held[path]
        # Removed while still locked: a process that opened the old file finds it
        # replaced when it locks it, and opens the path again.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if made:  # a run refused before it wrote anything leaves no dir
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def remove_held_locks() -> None:
    """For a process about to end without unwinding (`os._exit` on a second Ctrl-C): remove
    the lock files it holds, so the next run finds no stale one (the kernel drops the
    flock itself)."""
    for path in list(_held):
        with contextlib.suppress(OSError):
            path.unlink()
