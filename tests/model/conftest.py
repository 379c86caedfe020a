"""Fixtures of the model tests: tiny configs, built models, padded batches and attention
layers, handed out from `support.tiny_models` (see there for the sizes), and a seeded,
single-threaded run for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from seq2seq.model.attention import MultiHeadAttention
from support.tiny_models import (
    Batch,
    KindConfig,
    random_batch,
    set_rezero_alpha,
    tiny_attention,
    tiny_config,
    tiny_model,
)


@pytest.fixture(autouse=True)
def _seeded_single_thread() -> Iterator[None]:
    """Seed every test, and run it on one thread: on a loaded two-core machine, intra-op
    threads make each tiny op wait on the other core (hundreds of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_config() -> Callable[..., KindConfig]:
    return tiny_config


@pytest.fixture
def make_model() -> Callable[..., Any]:
    return tiny_model


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    return random_batch


@pytest.fixture
def make_attention() -> Callable[..., MultiHeadAttention]:
    """`make_attention(name, causal=..., feature_map=..., chunk_size=None, seed=0)`."""
    return tiny_attention


@pytest.fixture
def open_rezero() -> Callable[..., None]:
    return set_rezero_alpha
