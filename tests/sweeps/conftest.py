"""Shared helpers of the sweep tests: the summarize script as a module, and a runner of
real `seq2seq-train -m` sweeps of tiny models in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "summarize_sweep.py"

# A few seconds per run: 3 steps, 8 validation and test examples, short decoding.
TINY_RUN = (
    "model=tiny",
    "trainer.max_steps=3",
    "schedule.warmup_steps=0",
    "trainer.eval_every=3",
    "trainer.progress=log",
    "data.train_size=100",
    "data.validation_size=8",
    "data.test_size=8",
    "data.max_len=6",
    "generation.max_len_a=1",
    "generation.max_len_b=2",
)

Sweep = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def summarize_sweep() -> ModuleType:
    """scripts/summarize_sweep.py, imported as a module."""
    spec = importlib.util.spec_from_file_location("summarize_sweep", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def run_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """`run_sweep(sweep_dir, *overrides)`: `python -m seq2seq.cli.train -m` with the tiny
    settings, in a scratch working dir, sharing one tokenizer cache between sweeps."""
    cache = tmp_path_factory.mktemp("tokenizer_cache")
    work = tmp_path_factory.mktemp("sweep_cwd")

    def run(
        sweep_dir: Path, *overrides: str, tiny: Sequence[str] = TINY_RUN, full_error: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-m",
            "seq2seq.cli.train",
            "-m",
            *overrides,
            *tiny,
            f"hydra.sweep.dir={sweep_dir}",
            f"tokenizer.cache_dir={cache}",
        ]
        # One thread per run: the runs are tiny, and the test machine is shared.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env["HYDRA_FULL_ERROR"] = "1" if full_error else "0"
        return subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    return run
