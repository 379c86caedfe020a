"""Atomic file writes: a temporary file beside the target, flushed and fsynced, then
renamed over it. A crash at any point leaves the old file or the whole new one.

Only a regular file or a new path is replaced so. A symlink is followed: its target is
replaced and the link stays. A device or a FIFO (`/dev/null`, a named pipe, `/dev/stdout`
on a terminal or a pipe) is opened and written in place: renaming over it would put a
regular file in its stead (as root, over `/dev/null` itself). `/dev/stdout`, `/dev/fd/N`
and `/proc/self/fd/N` are written through the open descriptor they name, whatever it
leads to (a file the shell appends to with `>>`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

STANDARD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
TEMPORARY_NAME = re.compile(r"^\..+\.tmp-(\d+)$")
"""`.<name>.tmp-<pid>`: the temporary file `write_atomic` writes before the rename."""


def open_descriptor(path: Path) -> int | None:
    """The descriptor that `/dev/stdout`, `/dev/fd/N` or `/proc/self/fd/N` names: written
    through it, not reopened, so a shell's `>>` still appends and `>` is not replaced."""
    name = os.path.abspath(path)
    if name in STANDARD_STREAMS:
        return STANDARD_STREAMS[name]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return int(name[len(prefix) :])
    return None


def replaced_atomically(path: Path) -> bool:
    """Whether `write_atomic` renames a temporary file over `path` (a regular file or a new
    path, after following symlinks) rather than writing into it (a device, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a new path; its write says what fails
        return True
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Run `write` on a binary handle to a temporary file, then rename it to `path`; a
    symlink's target is written, a device or FIFO in place (see the module docstring).

    The temporary name carries the process id, so processes writing the same file (ranks
    sharing a tokenizer dir) never write into one temporary file.
    """
    descriptor = open_descriptor(path)
    if descriptor is not None:
        with open(descriptor, "wb", closefd=False) as handle:
            write(handle)
        return
    if not replaced_atomically(path):
        with open(path, "wb") as handle:
            write(handle)
        return
    # The target of a (possibly dangling) symlink: the rename replaces it, not the link.
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def process_running(pid: int) -> bool:
    """Whether process `pid` of this host runs (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphan_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files that `write_atomic` left in `directory` when its process
    was killed mid-write (SIGKILL, a node lost), those of processes that no longer run, and
    the temporary directories named alike (of sharded checkpoints); returns them. A live
    writer's file stays."""
    if not directory.is_dir():
        return []
    removed = []
    for path in sorted(directory.iterdir()):
        match = TEMPORARY_NAME.match(path.name)
        if not match or process_running(int(match.group(1))):
            continue
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(path)
    return removed


def write_bytes_atomic(data: bytes, path: Path) -> None:
    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    write_atomic(path, write)


def write_text_atomic(text: str, path: Path) -> None:
    write_bytes_atomic(text.encode("utf-8"), path)


def _finite(data: Any) -> Any:
    """`data` with NaN and infinities as None: strict JSON has no words for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def write_json_atomic(data: Any, path: Path) -> None:
    """Strict JSON (a non-finite figure is null), written atomically."""
    text = json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False)
    write_text_atomic(text + "\n", path)
