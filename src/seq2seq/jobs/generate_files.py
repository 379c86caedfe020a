"""The input and output files of seq2seq-generate: reading the inputs, checking every
output before any work, and writing them whole."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from seq2seq.atomic import replaced_atomically, write_text_atomic
from seq2seq.config.generate import STDIO, GenerateConfig
from seq2seq.utf8 import decode_utf8
from seq2seq.writable import why_not_writable

OUTPUT_OPTIONS = ("output", "nbest_output", "references_output")


def read_lines(source: str) -> list[str]:
    """The lines of a UTF-8 file (or FIFO, or `/dev/fd/N` of a shell's `<(...)`), or of
    stdin for `-`; only `\\n` ends a line. Empty input is an error: nothing to decode."""
    if source == STDIO:
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if path.is_dir():
            raise IsADirectoryError(f"input={source!r} is a directory; give a text file or '-'")
        if not path.exists():
            raise FileNotFoundError(f"input={source!r} does not exist; give a text file or '-'")
        data = path.read_bytes()
    text = decode_utf8(data, what=f"input={source!r}")
    if not text:
        raise ValueError(f"input={source!r} has no line to decode (it is empty)")
    # Split on "\n" alone: a lone "\r" stays inside its line.
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def require_text(lines: Sequence[str], source: str) -> None:
    """Refuse input whose every line is blank: a task that reads text has nothing to do."""
    if not any(line.strip() for line in lines):
        raise ValueError(f"input={source!r} has no line to decode (it is empty or blank)")


def in_job_dir(cfg: GenerateConfig, job_dir: Path) -> GenerateConfig:
    """`cfg` for one job of a multirun: a relative output path goes inside the job's own
    dir, so jobs never write one file (the last would silently win). An absolute path,
    which every job would share, is refused unless it is a device or FIFO."""
    changes: dict[str, Any] = {}
    for option in OUTPUT_OPTIONS:
        destination = getattr(cfg, option)
        if destination in (None, STDIO):
            continue
        path = Path(destination)
        if not path.is_absolute():
            changes[option] = str(job_dir / path)
        elif replaced_atomically(path):
            raise ValueError(
                f"{option}={destination!r}: every job of the multirun would write this one "
                "file; give a relative path (each job writes it in its own dir, "
                "hydra.sweep.dir/<job number>/) or '-'"
            )
    return replace(cfg, **changes)


def unwritable(path: Path) -> str | None:
    """Why `path` cannot be written, or None. A device or FIFO is written in place, so it
    must be writable (a read-only mount does not bar writing one); anything else is
    replaced through a temporary file beside it (or its symlink's target), so its
    directory must be writable, or creatable in the nearest directory that exists."""
    if not replaced_atomically(path):
        return None if os.access(path, os.W_OK) else "permission denied"
    directory = Path(os.path.realpath(path)).parent
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    why = why_not_writable(existing)
    if existing == directory:
        return f"cannot write in the directory {directory} ({why})"
    return f"cannot make the directory {directory} in {existing} ({why})"


def check_destinations(cfg: GenerateConfig, checkpoints: Mapping[str, Path]) -> None:
    """Refuse, before the model is loaded, an output that would overwrite the input, a
    checkpoint, a directory or another output, or that cannot be written: a mistake must
    cost neither a file nor a decode. `checkpoints`: each checkpoint's file, by its
    `checkpoint=` value."""
    protected = {path.resolve(): f"checkpoint={name!r}" for name, path in checkpoints.items()}
    if cfg.input not in (None, STDIO):
        protected[Path(cfg.input).resolve()] = f"input={cfg.input!r}"
    taken: dict[str | Path, str] = {}
    for option in OUTPUT_OPTIONS:
        destination = getattr(cfg, option)
        if destination is None:
            continue
        named = f"{option}={destination!r}"
        key: str | Path = STDIO if destination == STDIO else Path(destination).resolve()
        if key in taken:
            raise ValueError(f"{named} is also {taken[key]}; give each output its own file")
        if key in protected:
            raise ValueError(f"{named} would overwrite {protected[key]}; choose another file")
        if isinstance(key, Path):
            if key.is_dir():
                raise ValueError(f"{named} is a directory; give a file path or '-'")
            problem = unwritable(Path(destination))
            if problem is not None:
                raise ValueError(f"{named}: {problem}; choose another file")
        taken[key] = named


def write_output(lines: Sequence[str], destination: str, *, option: str) -> None:
    """One line each, to stdout for `-`, else through `write_text_atomic` (a regular file
    is never left half-written); an error names the option."""
    text = "".join(f"{line}\n" for line in lines)
    if destination == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_text_atomic(text, Path(destination))
    except OSError as error:
        raise OSError(f"{option}={destination!r}: cannot write it ({error})") from error
