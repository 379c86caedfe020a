"""The files of a run dir besides checkpoints and TensorBoard: the resolved config, Hydra's
record of the launch, `metrics.json`, `predictions.txt` and a failed sweep job's
`failure.json`; and what they say about how the run ended."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from seq2seq.atomic import write_json_atomic, write_text_atomic

CONFIG_NAME = "config.yaml"
HYDRA_SUBDIR = ".hydra"
METRICS_NAME = "metrics.json"
PREDICTIONS_NAME = "predictions.txt"
FAILURE_NAME = "failure.json"
"""What a failed sweep job leaves in its run dir: `{"stopped": "failed", "error": ...}`."""
HYDRA_RECORD_NAME = "hydra.yaml"
"""Hydra's own config of the launch, in `.hydra/`."""


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


def recorded_job_id(run_dir: Path) -> str | None:
    """`hydra.job.id` of the launch recorded in `run_dir/.hydra/hydra.yaml` (under
    hydra/launcher=slurm, the scheduler's job id), or None."""
    try:
        record = yaml.safe_load((run_dir / HYDRA_SUBDIR / HYDRA_RECORD_NAME).read_text("utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    job = record.get("hydra", {}).get("job", {}) if isinstance(record, dict) else {}
    job_id = job.get("id") if isinstance(job, dict) else None
    return None if job_id is None else str(job_id)


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
    logs = _job_logs(run_dir)
    entries = [entry.absolute() for entry in run_dir.iterdir()]
    if not all(entry in logs for entry in entries):
        return
    detach_job_logs(run_dir)
    with contextlib.suppress(OSError):
        for entry in entries:
            entry.unlink()
        run_dir.rmdir()


def _job_logs(run_dir: Path) -> dict[Path, logging.FileHandler]:
    """The root logger's file handlers writing into `run_dir` (Hydra's job log)."""
    return {
        Path(handler.baseFilename): handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler)
        and Path(handler.baseFilename).parent == run_dir.absolute()
    }


def detach_job_logs(run_dir: Path) -> None:
    """Close and detach the job log files Hydra opened in `run_dir`: the lines logged from
    now on go to the console alone. (Closed and detached, or the next line logged would
    make the file again.)"""
    root = logging.getLogger()
    for handler in _job_logs(run_dir).values():
        root.removeHandler(handler)
        handler.close()


def remove_stray_dir(directory: Path, *, run_dir: Path) -> None:
    """Remove `directory`, a run dir Hydra made for a rank other than 0 that is not rank
    0's `run_dir` (Hydra's clock gave another time), when empty; and its parents that are
    empty, up to the one it shares with `run_dir` (a date dir made for it alone). Nothing
    that holds a file is removed, and nothing at or above a parent shared only at the
    filesystem root."""
    directory, run_dir = directory.absolute(), run_dir.absolute()
    if directory == run_dir or directory in run_dir.parents:
        return
    shared = Path(os.path.commonpath([directory, run_dir]))
    with contextlib.suppress(OSError):
        directory.rmdir()
        if shared == Path(shared.anchor):
            return
        for parent in directory.parents:
            if parent == shared:
                break
            parent.rmdir()
