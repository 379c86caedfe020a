"""`directory_problem`: a directory to write in must exist writable, or be makeable in its
nearest existing ancestor; the reason says read-only file system or permission denied."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from seq2seq.writable import directory_problem


def test_an_existing_or_makeable_directory_is_fine(tmp_path: Path) -> None:
    assert directory_problem(tmp_path) is None
    assert directory_problem(tmp_path / "new" / "deeper") is None


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert directory_problem(blocker) == f"{blocker} is not a directory"
    assert directory_problem(blocker / "run") == f"{blocker} is not a directory"


@pytest.mark.parametrize(
    ("flags", "reason"),
    [(os.ST_RDONLY, "read-only file system"), (0, "permission denied")],
)
def test_an_unwritable_directory_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: int, reason: str
) -> None:
    """Root ignores permission bits, so the file system's answer is simulated."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=flags))
    assert directory_problem(tmp_path) == f"cannot write in it ({reason})"
    assert directory_problem(tmp_path / "run") == f"cannot make it in {tmp_path} ({reason})"
