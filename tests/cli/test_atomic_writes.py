"""seq2seq.atomic, which writes every CLI output (generate's files, checkpoints, metrics):
a regular file or a new path is replaced through a temporary file; a symlink is followed
(its target replaced, the link kept); a device or FIFO is written in place, never
replaced by a regular file.

No test writes to /dev/null: run as root, a wrong rule would replace the device itself.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from seq2seq.atomic import (
    remove_orphan_temporaries,
    replaced_atomically,
    write_json_atomic,
    write_text_atomic,
)


def test_which_paths_are_replaced_and_which_written_in_place(tmp_path: Path) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x", encoding="utf-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link_to_fifo = tmp_path / "link"
    link_to_fifo.symlink_to(fifo)
    assert replaced_atomically(regular)
    assert replaced_atomically(tmp_path / "new.txt")
    assert replaced_atomically(tmp_path / "new" / "deeper.txt")
    assert not replaced_atomically(fifo)
    assert not replaced_atomically(link_to_fifo)
    assert not replaced_atomically(Path(os.devnull))  # only looked at, never written


def test_a_symlink_keeps_its_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "metrics.json"
    target.parent.mkdir()
    target.write_text("{}\n", encoding="utf-8")
    link = tmp_path / "metrics.json"
    link.symlink_to(target)
    write_json_atomic({"bleu": 1.5}, link)
    assert link.is_symlink() and link.resolve() == target
    assert json.loads(target.read_text(encoding="utf-8")) == {"bleu": 1.5}
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "runs"]


def test_a_dangling_symlink_gets_its_target_written(tmp_path: Path) -> None:
    link = tmp_path / "hyps.txt"
    link.symlink_to(tmp_path / "elsewhere" / "hyps.txt")
    write_text_atomic("a\n", link)
    assert link.is_symlink()
    assert (tmp_path / "elsewhere" / "hyps.txt").read_text(encoding="utf-8") == "a\n"


def test_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(
        target=lambda: received.append(fifo.read_text(encoding="utf-8")), daemon=True
    )
    reader.start()
    write_text_atomic("one\ntwo\n", fifo)
    reader.join(timeout=30)
    assert not reader.is_alive(), "the FIFO was never opened for writing"
    assert received == ["one\ntwo\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_regular_file_is_still_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "out" / "hyps.txt"
    write_text_atomic("first\n", path)
    inode = path.stat().st_ino
    write_text_atomic("second\n", path)
    assert path.read_text(encoding="utf-8") == "second\n"
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in path.parent.iterdir()) == ["hyps.txt"]


def test_a_directory_is_not_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    with pytest.raises(OSError):
        write_text_atomic("x\n", directory)
    assert directory.is_dir()


def test_dev_stdout_is_written_through_the_open_descriptor(tmp_path: Path) -> None:
    """A shell's `>> file` must still append: /dev/stdout is not reopened or replaced."""
    log = tmp_path / "log.txt"
    log.write_text("first\n")
    code = (
        "from pathlib import Path\n"
        "from seq2seq.atomic import write_text_atomic\n"
        "write_text_atomic('second\\n', Path('/dev/stdout'))\n"
    )
    with log.open("ab") as appended:
        subprocess.run([sys.executable, "-c", code], stdout=appended, check=True)
    assert log.read_text() == "first\nsecond\n"


# Writes part of a checkpoint through write_atomic, says so, and waits to be killed.
_KILLED_WRITER = """
import sys, time
from pathlib import Path
from seq2seq.atomic import write_atomic
target, ready = Path(sys.argv[1]), Path(sys.argv[2])
def write(handle):
    handle.write(b"half a checkpoint")
    handle.flush()
    ready.write_text("")
    time.sleep(60)
write_atomic(target, write)
"""


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_next_start_removes(
    tmp_path: Path,
) -> None:
    """SIGKILL during a checkpoint write left `.step_*.pt.tmp-<pid>` forever. The file of a
    dead process is removed; a live writer's file and the other files stay."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    kept = [checkpoints / "step_00000002.pt", checkpoints / f".best.pt.tmp-{os.getpid()}"]
    for path in kept:
        path.write_bytes(b"x")
    ready = tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(checkpoints / "step_00000004.pt"), str(ready)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        for _ in range(600):
            if ready.exists() or writer.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert ready.exists(), "the writer never started writing"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    orphan = checkpoints / f".step_00000004.pt.tmp-{writer.pid}"
    assert orphan.read_bytes() == b"half a checkpoint"

    assert remove_orphan_temporaries(checkpoints) == [orphan]
    assert sorted(checkpoints.iterdir()) == sorted(kept)
    assert remove_orphan_temporaries(tmp_path / "missing") == []
