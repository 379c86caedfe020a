"""Atomic file writes: a temporary file beside the target, flushed and fsynced, then
renamed over it. A crash at any point leaves the old file or the whole new one."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Run `write` on a binary handle to a temporary file, then rename it to `path`.

    The temporary name carries the process id, so processes writing the same file (ranks
    sharing a tokenizer dir) never write into one temporary file.
    """
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
