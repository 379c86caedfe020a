"""Whether a directory can be written (or made), asked before any work that would need it,
so that a read-only place is one error naming the setting rather than a failure after the
data has been read."""

from __future__ import annotations

import os
from pathlib import Path


def why_not_writable(directory: Path) -> str:
    """Why `directory`, which exists and which `os.access` says cannot be written in, cannot:
    its file system is mounted read-only (which bars root too), or permission is denied."""
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def directory_problem(path: Path) -> str | None:
    """Why `path` cannot be used as a directory to write in, or None: it exists and is a
    writable directory, or it can be made (its nearest existing ancestor is one)."""
    path = Path(os.path.abspath(path))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    if existing == path:
        return f"cannot write in it ({why_not_writable(existing)})"
    return f"cannot make it in {existing} ({why_not_writable(existing)})"
