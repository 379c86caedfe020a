"""Summarize a Hydra multirun dir of seq2seq-train runs as one table, best run first.

Usage:

    python scripts/summarize_sweep.py outputs/multirun/2026-01-31/12-00-00
    python scripts/summarize_sweep.py outputs/multirun --monitor test/exact_match

Every run dir under DIR (a dir holding `.hydra/`, `metrics.json` or `failure.json`; the
numbered subdirs of a sweep, or of several sweeps nested below DIR) becomes one row:
its status, one column per swept key (an override whose value differs between runs;
those shared by all runs are printed once above the table), and its final figures from
`metrics.json`: the best value of `trainer.monitor` and its step, the final validation
figures (`valid/...`) and the test figures (`test/...`).

Finished runs (stopped by max_steps, max_epochs or early_stopping) come first, best
first by the monitor (`loss` and `ppl` lower is better, metrics as
`seq2seq.evaluation.get_metric(name).higher_is_better` says). Then `interrupted` runs
(metrics.json written after a signal) and `failed` runs (no metrics.json, an unreadable
one, or the `failure.json` that seq2seq-train writes when a run of a sweep raises, whose
error goes in the last column). A broken run never stops the summary.

The table is printed as Markdown and written, atomically, to DIR/summary.md and
DIR/summary.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FINISHED = ("max_steps", "max_epochs", "early_stopping")
LOWER_IS_BETTER = ("loss", "ppl")
STATUS_ORDER = {"finished": 0, "interrupted": 1, "failed": 2}
FIXED_COLUMNS = ("stopped", "step", "best_step")

Value = float | int | str | None


@dataclass
class Run:
    """One run dir: its overrides, how it ended and its figures by column name."""

    name: str
    status: str
    overrides: dict[str, str] = field(default_factory=dict)
    monitor: str | None = None
    figures: dict[str, Value] = field(default_factory=dict)
    error: str = ""


def natural_key(name: str) -> list[Any]:
    """Sort key that puts run `10` after run `9`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_run_dirs(root: Path) -> list[Path]:
    """Run dirs under `root` (itself included), without descending into a run dir."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if ".hydra" in dirnames or "metrics.json" in filenames or "failure.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []
        else:
            # .submitit logs and the like hold no runs.
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found, key=lambda path: natural_key(path.relative_to(root).as_posix()))


def read_overrides(run_dir: Path) -> dict[str, str]:
    """`.hydra/overrides.yaml` as {key: value}; `+key=v`/`++key=v` count as `key`."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    overrides = {}
    for item in items:
        text = str(item)
        if text.startswith("~"):
            key, _, value = text[1:].partition("=")
            overrides[key] = "~" + value if value else "~"
            continue
        key, _, value = text.partition("=")
        overrides[key.lstrip("+")] = value
    return overrides


def _number(value: Any) -> Value:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)) or value is None:
        return value
    return str(value)


def read_run(run_dir: Path, name: str) -> Run:
    """Everything the table shows about one run; problems become a `failed` row."""
    run = Run(name=name, status="failed")
    try:
        run.overrides = read_overrides(run_dir)
    except (OSError, yaml.YAMLError) as error:
        run.error = f"unreadable .hydra/overrides.yaml: {error}"
    metrics_path = run_dir / "metrics.json"
    failure_path = run_dir / "failure.json"
    if not metrics_path.is_file():
        run.error = run.error or "no metrics.json"
        if failure_path.is_file():
            try:
                failure = json.loads(failure_path.read_text(encoding="utf-8"))
                run.error = str(failure.get("error", "")) or "failure.json"
                run.figures["stopped"] = str(failure.get("stopped", "failed"))
            except (OSError, ValueError, AttributeError) as error:
                run.error = f"unreadable failure.json: {error}"
        return run
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        stopped = str(metrics.get("stopped", ""))
        run.monitor = metrics.get("monitor")
        best = metrics.get("best") or {}
        run.figures["stopped"] = stopped
        run.figures["step"] = _number(metrics.get("step"))
        run.figures["best_step"] = _number(best.get("step"))
        if run.monitor is not None:
            run.figures[f"best/{run.monitor}"] = _number(best.get(run.monitor))
        for key, value in (metrics.get("final_validation") or {}).items():
            run.figures[f"valid/{key}"] = _number(value)
        for key, value in (metrics.get("test") or {}).items():
            run.figures[f"test/{key}"] = _number(value)
        if metrics.get("skipped_steps"):
            run.figures["skipped_steps"] = _number(metrics["skipped_steps"])
    except (OSError, ValueError, AttributeError) as error:
        run.figures = {}
        run.error = f"unreadable metrics.json: {error}"
        return run
    run.status = "finished" if stopped in FINISHED else "interrupted"
    return run


def higher_is_better(column: str) -> bool:
    """Direction of a figure: `best/bleu`, `valid/loss`, `test/wer`, or a bare name."""
    name = column.rsplit("/", 1)[-1]
    if name in LOWER_IS_BETTER:
        return False
    from seq2seq.evaluation import get_metric

    return get_metric(name).higher_is_better


def _finite(value: Value) -> float | None:
    if isinstance(value, (int, float)) and not math.isnan(float(value)):
        return float(value)
    return None


def rank_runs(runs: list[Run], sort_by: str | None) -> list[Run]:
    """Finished runs best first by `sort_by`, then interrupted, then failed ones."""
    higher = higher_is_better(sort_by) if sort_by else True

    def key(run: Run) -> tuple[int, int, float, list[Any]]:
        value = _finite(run.figures.get(sort_by)) if sort_by else None
        if value is None:
            return (STATUS_ORDER[run.status], 1, 0.0, natural_key(run.name))
        return (STATUS_ORDER[run.status], 0, -value if higher else value, natural_key(run.name))

    return sorted(runs, key=key)


def split_overrides(runs: list[Run]) -> tuple[list[str], dict[str, str]]:
    """(swept keys in first-seen order, overrides shared by every run)."""
    keys: list[str] = []
    for run in runs:
        keys.extend(key for key in run.overrides if key not in keys)
    if len(runs) < 2:
        return keys, {}
    swept, common = [], {}
    for key in keys:
        values = {run.overrides.get(key) for run in runs}
        if len(values) == 1 and None not in values:
            common[key] = runs[0].overrides[key]
        else:
            swept.append(key)
    return swept, common


def _figure_order(column: str) -> tuple[int, str]:
    prefixes = ("best/", "valid/", "test/")
    for position, prefix in enumerate(prefixes):
        if column.startswith(prefix):
            return position, column
    return len(prefixes), column


def table(runs: list[Run], swept: list[str]) -> tuple[list[str], list[list[Value]]]:
    """Header and rows: run, status, swept keys, figures, error."""
    figure_columns = sorted(
        {key for run in runs for key in run.figures if key not in FIXED_COLUMNS},
        key=_figure_order,
    )
    columns = ["run", "status", *swept, *FIXED_COLUMNS, *figure_columns, "error"]
    rows: list[list[Value]] = []
    for run in runs:
        cells = {**run.figures, **run.overrides, "run": run.name, "status": run.status}
        cells["error"] = run.error
        rows.append([cells.get(column) for column in columns])
    return columns, rows


def _cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(columns: list[str], rows: list[list[Value]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(columns: list[str], rows: list[list[Value]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return out.getvalue()


def write_atomic(text: str, path: Path) -> None:
    """Write via a temporary file in the same dir and a rename: readers never see half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def summarize(root: Path, monitor: str | None = None) -> str:
    """The Markdown summary of the sweep under `root`; writes summary.{md,csv} into it."""
    run_dirs = find_run_dirs(root)
    if not run_dirs:
        raise FileNotFoundError(f"no run dirs (with .hydra/ or metrics.json) under {root}")
    runs = [read_run(path, path.relative_to(root).as_posix() or root.name) for path in run_dirs]
    monitors = Counter(run.monitor for run in runs if run.monitor is not None)
    sort_by = monitor
    if sort_by is None and monitors:
        sort_by = f"best/{monitors.most_common(1)[0][0]}"
    ranked = rank_runs(runs, sort_by)
    swept, common = split_overrides(runs)
    columns, rows = table(ranked, swept)

    counts = Counter(run.status for run in runs)
    lines = [f"# Sweep {root}", ""]
    status = ", ".join(f"{counts[name]} {name}" for name in STATUS_ORDER if counts[name])
    lines.append(f"{len(runs)} runs: {status}.")
    if sort_by:
        direction = "higher" if higher_is_better(sort_by) else "lower"
        lines.append(f"Sorted by {sort_by} ({direction} is better).")
    if common:
        shared = " ".join(f"{key}={value}" for key, value in common.items())
        lines.append(f"Shared overrides: `{shared}`")
    text = "\n".join(lines) + "\n\n" + markdown(columns, rows)
    write_atomic(text, root / "summary.md")
    write_atomic(csv_text(columns, rows), root / "summary.csv")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Summarize a Hydra multirun dir of seq2seq-train runs, best run first."
    )
    parser.add_argument("dir", type=Path, help="the sweep dir (hydra.sweep.dir) or a parent")
    parser.add_argument(
        "--monitor",
        default=None,
        help="column to rank by, e.g. test/bleu or valid/loss "
        "(default: best/<trainer.monitor> of the runs)",
    )
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"{args.dir} is not a directory")
    try:
        text = summarize(args.dir, monitor=args.monitor)
    except (FileNotFoundError, ValueError) as error:
        print(f"summarize_sweep: {error}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
