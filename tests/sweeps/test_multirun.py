"""Real `seq2seq-train -m` sweeps of tiny models in a subprocess, summarized."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

Sweep = Callable[..., "subprocess.CompletedProcess[str]"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_grid_sweep_gives_one_run_dir_per_combination(
    run_sweep: Sweep, summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep,
        "experiment=toy_reverse",
        "norm=layernorm,rezero",
        "model.decoder.self_attention=softmax,causal_linear",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(path.name for path in sweep.iterdir() if path.is_dir())
    assert runs == ["0", "1", "2", "3"]
    combinations = set()
    for name in runs:
        run = sweep / name
        assert (run / "config.yaml").is_file() and (run / "tensorboard").is_dir()
        assert list((run / "tensorboard").iterdir())
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["stopped"] == "max_steps" and metrics["step"] == 3
        assert metrics["monitor"] == "exact_match" and "exact_match" in metrics["test"]
        config = (run / "config.yaml").read_text(encoding="utf-8")
        norm = "rezero" if "norm: rezero" in config else "layernorm"
        attention = "causal_linear" if "self_attention: causal_linear" in config else "softmax"
        combinations.add((norm, attention))
    assert len(combinations) == 4

    summarize_sweep.summarize(sweep)
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4 and {row["status"] for row in rows} == {"finished"}
    assert {(row["norm"], row["model.decoder.self_attention"]) for row in rows} == combinations
    values = [float(row["best/exact_match"]) for row in rows]
    assert values == sorted(values, reverse=True)
    assert {"valid/loss", "test/exact_match", "test/cer"} <= set(rows[0])


def test_a_failing_run_does_not_stop_the_sweep(
    run_sweep: Sweep, summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    """data.max_tokens=4 is too small for the data, found when that run batches it; the
    other run still trains, the summary reports the failure (from the failure.json
    seq2seq-train writes) and the sweep ends with one error line, status 1."""
    sweep = tmp_path / "sweep"
    # The failing combination first, so a launcher that stopped at it would skip the other.
    done = run_sweep(sweep, "experiment=toy_reverse", "data.max_tokens=4,256", full_error=False)
    assert not (sweep / "0" / "metrics.json").exists()
    failure = json.loads((sweep / "0" / "failure.json").read_text(encoding="utf-8"))
    assert failure["stopped"] == "failed" and "data.max_tokens=4" in failure["error"]
    assert json.loads((sweep / "1" / "metrics.json").read_text())["stopped"] == "max_steps"
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith(
        f"seq2seq-train: error: sweep job {sweep / '0'} failed: data.max_tokens=4 is smaller"
    )
    assert "Traceback" not in done.stderr

    text = summarize_sweep.summarize(sweep)
    rows = read_csv(sweep / "summary.csv")
    assert [(row["run"], row["status"], row["data.max_tokens"]) for row in rows] == [
        ("1", "finished", "256"),
        ("0", "failed", "4"),
    ]
    assert "max_tokens" in rows[1]["error"]
    assert "1 finished, 1 failed" in text


def test_a_bad_value_anywhere_in_a_grid_is_refused_before_any_run(
    run_sweep: Sweep, tmp_path: Path
) -> None:
    """The last of four jobs has heads=3 (d_model 32 is not divisible): nothing trains."""
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep,
        "experiment=toy_reverse",
        "model.heads=4,3",
        "norm=layernorm,rezero",
        full_error=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "seq2seq-train: error: sweep job #2 (model.heads=3 norm=layernorm): model.d_model=32 "
        "is not divisible by model.heads=3; choose heads among [1, 2, 4, 8, 16, 32]; "
        "no job was started"
    ]
    assert not sweep.exists()


@pytest.mark.slow
def test_joblib_launcher_runs_a_sweep_in_parallel(
    run_sweep: Sweep, summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    """Slow (about 40 s on 2 shared cores): each loky worker imports torch afresh."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the sweep extra")
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep, "hydra/launcher=joblib_local", "experiment=toy_reverse", "norm=layernorm,rezero"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    summarize_sweep.summarize(sweep)
    rows = read_csv(sweep / "summary.csv")
    assert sorted(row["norm"] for row in rows) == ["layernorm", "rezero"]
    assert {row["status"] for row in rows} == {"finished"}


def test_a_rerun_with_other_settings_is_refused_and_a_right_one_clears_the_failure(
    run_sweep: Sweep, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    first = run_sweep(sweep, "experiment=toy_reverse", "optim.lr=0.001")
    assert first.returncode == 0, first.stderr
    metrics = (sweep / "0" / "metrics.json").read_text()

    other = run_sweep(
        sweep, "experiment=toy_reverse", "optim.lr=0.002", "trainer.resume=auto", full_error=False
    )
    assert other.returncode == 1
    assert (
        "holds a finished run with other settings (optim.lr: finished with 0.001 vs now 0.002)"
        in (other.stderr.splitlines()[-1])
    )
    assert (sweep / "0" / "failure.json").is_file()
    assert (sweep / "0" / "metrics.json").read_text() == metrics  # the finished run stays

    again = run_sweep(sweep, "experiment=toy_reverse", "optim.lr=0.001", "trainer.resume=auto")
    assert again.returncode == 0, again.stderr
    assert not (sweep / "0" / "failure.json").exists()
    assert (sweep / "0" / "metrics.json").read_text() == metrics
