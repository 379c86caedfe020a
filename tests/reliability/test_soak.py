"""The soak script: its checks catch lost, repeated and jumping steps (fast, on synthetic
curves), and a short soak of real SIGTERM/SIGINT interruptions passes them (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_step_counts_catch_missing_repeated_and_unexpected_steps(soak: ModuleType) -> None:
    expected = soak.expected_steps(10, 1)
    assert expected == list(range(1, 11))
    assert soak.expected_steps(10, 4) == [1, 4, 8]
    assert soak.count_check("steps", expected, expected).ok
    check = soak.count_check("steps", [1, 2, 3, 3, 5, 6, 7, 8, 9, 10, 11], expected)
    assert not check.ok
    assert "missing [4] (1)" in check.detail and "repeated [3] (1)" in check.detail
    assert "unexpected [11] (1)" in check.detail


def _noisy_curve(steps: int) -> dict[int, float]:
    # A falling loss with a fixed +-0.05 zigzag: every normal step-to-step change is ~0.1.
    return {s: 3.0 - s / steps + (0.05 if s % 2 else -0.05) for s in range(1, steps + 1)}


def test_continuity_passes_a_smooth_resume_and_flags_a_jump(soak: ModuleType) -> None:
    losses = _noisy_curve(400)
    check, rows = soak.resume_jumps(losses, [100, 250], window=50, factor=1.5)
    assert check.ok and [r["to_step"] for r in rows] == [101, 251]

    # A resume that restarted the model: the loss is back at its first value.
    broken = dict(losses)
    for step in range(251, 401):
        broken[step] = losses[step] + 1.0
    check, rows = soak.resume_jumps(broken, [100, 250], window=50, factor=1.5)
    assert not check.ok and "too large at steps [251]" in check.detail


def _run_soak(tmp_path: Path, *arguments: str) -> dict:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
            "--quiet",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(out.read_text())
    failed = [c for c in summary["checks"] if not c["ok"]]
    assert result.returncode == 0 and summary["ok"], (failed, result.stdout[-3000:])
    return summary


@pytest.mark.slow
def test_soak_by_steps_with_an_unbroken_reference(tmp_path: Path) -> None:
    summary = _run_soak(
        tmp_path,
        "--steps=300",
        "--every-steps=100",
        "--jitter=0",
        "--eval-every=50",
        "--reference",
    )
    assert (summary["launches"], summary["stop_steps"]) == (3, [100, 200])
    assert summary["reference"]["max_abs_difference"] <= 1e-5
    assert summary["final_metrics"]["stopped"] == "max_steps"


@pytest.mark.slow
def test_soak_by_seconds_alternating_sigterm_and_sigint(tmp_path: Path) -> None:
    summary = _run_soak(
        tmp_path,
        "--steps=300",
        "--every-seconds=3",
        "--signals=SIGTERM,SIGINT",
        "--eval-every=40",
        "--log-every=3",
    )
    assert summary["interruptions"] >= 1
    assert summary["steps_logged"] == 1 + 300 // 3
