"""Shared fixtures: compose the real Hydra config in-process and run tiny trainings.

Torch's intra-op thread count is left to the environment (`OMP_NUM_THREADS`), so the
suite can run on one busy core; fixtures that need one thread set it and restore it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seq2seq.config.store import CONFIG_MODULE, register_configs
from seq2seq.jobs.train import train

register_configs()

TINY = (
    "model=tiny",
    "trainer.max_steps=4",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.num_samples=2",
    "trainer.progress=log",
    "schedule.warmup_steps=0",
    "data.train_size=200",
    "data.validation_size=16",
    "data.test_size=16",
    "data.min_len=3",
    "data.max_len=8",
    "data.max_tokens=256",
)

Compose = Callable[..., DictConfig]


@pytest.fixture
def compose_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Compose:
    """`compose_config(*overrides, tiny=True)` -> the composed train config, with the
    working directory (and so the tokenizer cache) inside the test's tmp_path."""
    monkeypatch.chdir(tmp_path)
    return compose_train


def compose_train(*overrides: str, tiny: bool = True, base: Sequence[str] = ()) -> DictConfig:
    """The composed train config: `base`, then the TINY preset unless `tiny=False`, then
    `overrides`."""
    extra = [*TINY] if tiny else []
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=[*base, *extra, *overrides])


def compose_generate_config(*overrides: str) -> DictConfig:
    """The composed seq2seq-generate config."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("generate", overrides=list(overrides))


@pytest.fixture
def compose_generate() -> Compose:
    """`compose_generate(*overrides)` -> the composed seq2seq-generate config."""
    return compose_generate_config


TrainRun = Callable[..., Path]


@pytest.fixture(scope="session")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    """`train_run(name, *overrides, tiny=True)` trains one run in a fresh directory and
    returns its run dir (`<dir>/run`), for modules that share one trained run; the
    tokenizer cache goes under that directory too."""

    def run(name: str, *overrides: str, tiny: bool = True) -> Path:
        root = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            train(compose_train(*overrides, tiny=tiny), root / "run")
        return root / "run"

    return run


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for a module's tiny models (`pytestmark = usefixtures(...)`): on a
    loaded two-core machine a second thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
