"""The files of a run dir besides checkpoints and TensorBoard: the resolved config, Hydra's
record of the launch, `metrics.json`, `predictions.txt` and a failed sweep job's
`failure.json`; and what they say about how the run ended."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seq2seq.atomic import write_json_atomic, write_text_atomic

CONFIG_NAME = "config.yaml"
HYDRA_SUBDIR = ".hydra"
METRICS_NAME = "metrics.json"
PREDICTIONS_NAME = "predictions.txt"
FAILURE_NAME = "failure.json"
"""What a failed sweep job leaves in its run dir: `{"stopped": "failed", "error": ...}`."""


def write_files(directory: Path, files: Mapping[str, str]) -> None:
    """Each `name: text` of `files` into `directory` (made if missing), atomically."""
    for name, text in files.items():
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(text, directory / name)


def write_failure(run_dir: Path, error: BaseException) -> None:
    write_json_atomic(
        {"stopped": "failed", "error": f"{type(error).__name__}: {error}"},
        run_dir / FAILURE_NAME,
    )


def read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def signal_status(run_dir: Path) -> int | None:
    """128 + the signal number when SIGTERM or SIGINT stopped the run in `run_dir` (it has
    checkpointed), as a shell reports a process ended by that signal; None otherwise."""
    metrics = read_metrics(run_dir)
    stopped = metrics.get("signal", metrics.get("stopped"))
    if isinstance(stopped, str) and stopped in signal.Signals.__members__:
        return 128 + signal.Signals[stopped].value
    return None


def remove_refused_run(run_dir: Path) -> None:
    """Hydra makes the run dir before the job, and the job's log file (`train.log`) in it
    at the first line logged. A run refused before it wrote any file of its own (during
    data work, say) leaves neither: the log holds only lines the console showed. Call it
    only for a run dir that was empty when the job started; anything else in it stays
    (and so does a dir that cannot be removed)."""
    if not run_dir.is_dir():
        return
    root = logging.getLogger()
    logs = {
        Path(handler.baseFilename): handler
        for handler in root.handlers
        if isinstance(handler, logging.FileHandler)
        and Path(handler.baseFilename).parent == run_dir.absolute()
    }
    entries = [entry.absolute() for entry in run_dir.iterdir()]
    if not all(entry in logs for entry in entries):
        return
    for entry in entries:
        # Closed and detached first, or the next line logged would make the file again.
        root.removeHandler(logs[entry])
        logs[entry].close()
    with contextlib.suppress(OSError):
        for entry in entries:
            entry.unlink()
        run_dir.rmdir()
