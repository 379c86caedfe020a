"""Keeps Hugging Face datasets' cache inside each test's tmp_path, and quiet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
    yield
