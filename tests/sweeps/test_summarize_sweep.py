"""scripts/summarize_sweep.py on synthetic multirun dirs built by the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def make_run(
    run_dir: Path,
    overrides: list[str],
    metrics: dict[str, Any] | None = None,
    *,
    failure: dict[str, Any] | None = None,
    raw_metrics: str | None = None,
) -> None:
    """A run dir as seq2seq-train leaves it: .hydra/overrides.yaml and, if it got that far,
    metrics.json (or failure.json)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {item}\n" for item in overrides), encoding="utf-8"
    )
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if raw_metrics is not None:
        (run_dir / "metrics.json").write_text(raw_metrics, encoding="utf-8")
    if failure is not None:
        (run_dir / "failure.json").write_text(json.dumps(failure), encoding="utf-8")


def metrics(stopped: str, best: float, *, monitor: str = "exact_match", step: int = 100) -> dict:
    return {
        "stopped": stopped,
        "step": step,
        "monitor": monitor,
        "best": {"step": step, monitor: best},
        "final_validation": {"loss": 1.0 - best / 2, monitor: best, "cer": 10.0},
        "test": {monitor: best - 0.01, "cer": 12.5} if stopped == "max_steps" else {},
        "skipped_steps": 0,
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four runs: two finished (the better one second), one interrupted, one failed."""
    root = tmp_path / "multirun"
    fixed = "experiment=toy_reverse"
    make_run(root / "0", [fixed, "norm=layernorm", "optim.lr=0.001"], metrics("max_steps", 0.5))
    make_run(root / "1", [fixed, "norm=rezero", "optim.lr=0.001"])  # crashed: no metrics
    make_run(root / "2", [fixed, "norm=layernorm", "optim.lr=0.003"], metrics("SIGTERM", 0.9))
    make_run(root / "3", [fixed, "norm=rezero", "optim.lr=0.003"], metrics("max_steps", 0.75))
    (root / "multirun.yaml").write_text("hydra: {}\n", encoding="utf-8")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_table_is_best_first_with_failures_last(
    summarize_sweep: ModuleType, sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summarize_sweep.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[:4] == ["run", "status", "norm", "optim.lr"]
    assert "experiment" not in header  # shared by all runs: printed once above the table
    assert "Shared overrides: `experiment=toy_reverse`" in printed
    assert "Sorted by best/exact_match (higher is better)" in printed
    body = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]
    assert [(row[0], row[1]) for row in body] == [
        ("3", "finished"),
        ("0", "finished"),
        ("2", "interrupted"),
        ("1", "failed"),
    ]
    assert (sweep / "summary.md").read_text(encoding="utf-8") == printed


def test_csv_holds_overrides_and_figures(summarize_sweep: ModuleType, sweep: Path) -> None:
    summarize_sweep.summarize(sweep)
    rows = read_csv(sweep / "summary.csv")
    assert [row["run"] for row in rows] == ["3", "0", "2", "1"]
    best = rows[0]
    assert best["status"] == "finished" and best["stopped"] == "max_steps"
    assert (best["norm"], best["optim.lr"]) == ("rezero", "0.003")
    assert float(best["best/exact_match"]) == 0.75
    assert float(best["valid/loss"]) == pytest.approx(0.625)
    assert float(best["test/exact_match"]) == pytest.approx(0.74)
    assert float(best["test/cer"]) == 12.5
    interrupted = rows[2]
    assert interrupted["stopped"] == "SIGTERM" and interrupted["test/exact_match"] == ""
    failed = rows[3]
    assert failed["status"] == "failed" and failed["error"] == "no metrics.json"
    assert failed["norm"] == "rezero" and failed["best/exact_match"] == ""
    assert not list(sweep.glob(".*.tmp"))  # the atomic writes left no temporary files


def test_lower_is_better_monitor_and_nested_sweeps(
    summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    root = tmp_path / "multirun"
    for time, lr, loss in (("10-00-00", "0.1", 2.0), ("11-00-00", "0.2", 1.5)):
        for num, norm in enumerate(("layernorm", "rezero")):
            values = metrics("max_steps", loss + num, monitor="loss")
            make_run(root / time / str(num), [f"optim.lr={lr}", f"norm={norm}"], values)
    make_run(
        root / "11-00-00" / "10",
        ["optim.lr=0.2", "norm=prescalenorm"],
        metrics("max_steps", 0.1, monitor="loss"),
    )
    (root / "10-00-00" / "0" / "tensorboard").mkdir()
    (root / "10-00-00" / "0" / "tensorboard" / "metrics.json").write_text("{}")
    summarize_sweep.summarize(root)
    rows = read_csv(root / "summary.csv")
    # Run 10 after run 1; nothing inside a run dir (its tensorboard/) counts as a run.
    assert [row["run"] for row in rows] == [
        "11-00-00/10",
        "11-00-00/0",
        "10-00-00/0",
        "11-00-00/1",
        "10-00-00/1",
    ]
    assert float(rows[0]["best/loss"]) == 0.1


def test_broken_files_and_failure_json_do_not_stop_the_summary(
    summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    root = tmp_path / "sweep"
    make_run(root / "0", ["model.heads=4"], metrics("max_steps", 0.2))
    make_run(
        root / "1",
        ["model.heads=3"],
        failure={"stopped": "failed", "error": "ValueError: model.d_model=32 ... model.heads=3"},
    )
    make_run(root / "2", ["model.heads=2"], raw_metrics="{not json")
    make_run(root / "3", ["model.heads=1"], metrics("max_steps", float("nan")))
    (root / "4" / ".hydra").mkdir(parents=True)  # killed before Hydra wrote its files
    (root / ".submitit" / "123" / ".hydra").mkdir(parents=True)  # logs, not a run
    text = summarize_sweep.summarize(root)
    rows = {row["run"]: row for row in read_csv(root / "summary.csv")}
    assert list(rows) == ["0", "3", "1", "2", "4"]  # the NaN best sorts after a number
    assert rows["1"]["status"] == "failed" and "model.heads=3" in rows["1"]["error"]
    assert rows["1"]["stopped"] == "failed"
    assert rows["2"]["status"] == "failed" and "unreadable metrics.json" in rows["2"]["error"]
    assert rows["4"]["status"] == "failed" and rows["4"]["model.heads"] == ""
    assert "3 failed" in text and "2 finished" in text


def test_usage_errors(
    summarize_sweep: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summarize_sweep.main([str(tmp_path)]) == 1
    assert "no run dirs" in capsys.readouterr().err
    make_run(tmp_path / "0", ["norm=rezero"], metrics("max_steps", 0.5))
    assert summarize_sweep.main([str(tmp_path), "--monitor", "valid/nonsense"]) == 1
    assert "unknown metric 'nonsense'" in capsys.readouterr().err
    assert summarize_sweep.main([str(tmp_path), "--monitor", "valid/loss"]) == 0
    assert "Sorted by valid/loss (lower is better)" in capsys.readouterr().out
