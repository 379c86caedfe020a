"""The project works installed, not only cloned: a wheel built from this tree, installed
into a fresh venv (which reuses this venv's dependencies instead of downloading them),
trains from an empty directory with the built-in configs, and runs an experiment of the
user's own from a `--config-dir`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ("trainer=debug", "trainer.eval_every=4", "model=tiny", "data.train_size=64")

MY_TASK = """\
# @package _global_
defaults:
  - override /model: tiny
  - override /data: sort
  - override /tokenizer: char
data:
  train_size: 64
  validation_size: 8
  test_size: 8
trainer:
  metrics: [exact_match]
"""


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel of this tree installed; its bin dir and environment."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist")]
    try:
        _run([*build, "--no-build-isolation", str(ROOT)], root, env)
    except AssertionError:  # no setuptools in this venv: let pip fetch the build backend
        _run([*build, str(ROOT)], root, env)
    (wheel,) = (root / "dist").glob("seq2seq-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    # The test venv's packages, after the new venv's own: dependencies without downloads,
    # while seq2seq itself comes from the wheel (a .pth adds a path, not its .pth files).
    (site / "reuse_test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        root,
        env,
    )
    return venv / "bin", env


def test_the_package_is_the_wheel_and_has_its_configs(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    done = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import seq2seq, importlib.resources as r; print(seq2seq.__file__); "
            "print(r.files('seq2seq.configs').joinpath('train.yaml').is_file())",
        ],
        tmp_path,
        env,
    )
    location, has_configs = done.stdout.split()
    assert str(bin_dir.parent) in location, "seq2seq must come from the wheel, not the clone"
    assert has_configs == "True"


def test_a_short_training_runs_from_an_empty_directory(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    _run(
        [str(bin_dir / "seq2seq-train"), "experiment=toy_reverse", *SMOKE, "hydra.run.dir=run"],
        tmp_path,
        env,
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", 4)
    assert "exact_match" in metrics["test"]


def test_an_experiment_of_ones_own_runs_from_a_config_dir(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "my_task.yaml").write_text(MY_TASK)
    _run(
        [
            str(bin_dir / "seq2seq-train"),
            "--config-dir",
            "my_configs",
            "experiment=my_task",
            "trainer=debug",
            "hydra.run.dir=run",
        ],
        tmp_path,
        env,
    )
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "builtin: sort" in config and "d_model: 32" in config
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped"] == "max_steps" and metrics["test"]["exact_match"] >= 0
