"""Shared pieces of the reliability tests: one thread, private caches, a guard that says
whether a run got as far as loading data, and the run command for subprocess tests.

Helpers are fixtures so that test modules never import each other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from seq2seq.tasks import TASKS


class DataLoaded(Exception):
    """Raised in place of a task's `prepare`: the run got past every config check."""


@pytest.fixture(autouse=True)
def _one_thread_private_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One intra-op thread (on two loaded cores, two threads make each tiny op wait for the
    other core, tens of times slower); Hugging Face caches inside the test's tmp_path."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def block_data(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace every task's `prepare` (its data work) by a sentinel that records its call
    and raises `DataLoaded`: a test asserts that a bad config never gets that far."""
    calls: list[Any] = []

    def prepare(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        raise DataLoaded

    for task in TASKS.values():
        monkeypatch.setattr(task, "prepare", prepare)
    return calls


@pytest.fixture
def stop_after_data(monkeypatch: pytest.MonkeyPatch) -> type[Exception]:
    """Stop a run right after its data is prepared (at the task's `build_model`), for tests
    of data loading and cleaning that need no training; returns the exception to expect."""

    def build_model(*args: Any, **kwargs: Any) -> Any:
        raise DataLoaded

    for task in TASKS.values():
        monkeypatch.setattr(task, "build_model", build_model)
    return DataLoaded


# A few-second run for subprocess tests: tiny model and data, no sample text.
SUBPROCESS_RUN = (
    "experiment=toy_reverse",
    "model=tiny",
    "schedule.warmup_steps=10",
    "trainer.log_every=1",
    "trainer.progress=log",
    "trainer.num_samples=0",
    "data.train_size=200",
    "data.validation_size=8",
    "data.test_size=8",
    "data.min_len=3",
    "data.max_len=8",
    "data.max_tokens=256",
)


def subprocess_env(tmp: Path) -> dict[str, str]:
    """One thread per process, unbuffered output, Hugging Face caches under `tmp`."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        HF_DATASETS_CACHE=str(tmp / "hf-cache"),
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TQDM_DISABLE="1",
    )
    return env


@pytest.fixture(scope="session")
def train_command() -> Callable[..., list[str]]:
    """`train_command(tmp, *overrides)`: `python -m seq2seq.cli.train` with the tiny run,
    its run dir `tmp/run` and tokenizer cache `tmp/cache`."""

    def command(tmp: Path, *overrides: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "seq2seq.cli.train",
            *SUBPROCESS_RUN,
            f"hydra.run.dir={tmp / 'run'}",
            f"tokenizer.cache_dir={tmp / 'cache'}",
            *overrides,
        ]

    return command


@pytest.fixture(scope="session")
def make_subprocess_env() -> Callable[[Path], dict[str, str]]:
    return subprocess_env
