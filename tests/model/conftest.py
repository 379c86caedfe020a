"""Shared pieces of the model tests: tiny configs, built models and padded batches.

Sizes are tiny (D=32, 4 heads so Dh=8, 2 layers, vocabulary 20) so the whole folder runs in
seconds on two CPU cores. Helpers are handed out as fixtures so test modules never import
each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config.model import (
    DecoderConfig,
    EncoderConfig,
    LinearAttentionConfig,
    ModelConfig,
)
from seq2seq.model import ModelKind, build_model
from seq2seq.model.attention import MultiHeadAttention
from seq2seq.model.norms import ReZeroResidual

VOCAB = 20
PAD = 0
D_MODEL = 32
HEADS = 4
HEAD_DIM = D_MODEL // HEADS


@dataclass
class KindConfig(ModelConfig):
    """A ModelConfig with the model kind beside it (a task picks the kind in a run)."""

    kind: ModelKind = "encoder_decoder"


def tiny_config(
    *,
    kind: str = "encoder_decoder",
    encoder: str = "softmax",
    decoder: str = "softmax",
    cross: str = "softmax",
    linear: dict[str, Any] | None = None,
    layers: int = 2,
    **fields: Any,
) -> KindConfig:
    """A tiny ModelConfig; `linear` sets `model.linear.*` explicitly, `fields` the rest."""
    values: dict[str, Any] = {
        "d_model": D_MODEL,
        "heads": HEADS,
        "d_ff": 64,
        "dropout": 0.0,
        "max_len": 128,
    }
    values.update(fields)
    return KindConfig(
        kind=kind,  # type: ignore[arg-type]
        encoder=EncoderConfig(layers=layers, self_attention=encoder),
        decoder=DecoderConfig(layers=layers, self_attention=decoder, cross_attention=cross),
        linear=LinearAttentionConfig(**(linear or {})),
        **values,
    )


def tiny_model(cfg: ModelConfig, *, seed: int = 0, **kwargs: Any) -> Any:
    """`build_model` at the tiny vocabulary, of the config's kind (a `KindConfig`'s, else
    encoder-decoder); typed Any so tests reach submodules freely."""
    kwargs.setdefault("src_vocab_size", VOCAB)
    kwargs.setdefault("tgt_vocab_size", VOCAB)
    kwargs.setdefault("kind", getattr(cfg, "kind", "encoder_decoder"))
    if kwargs["kind"] != "encoder_classifier":
        kwargs.pop("num_classes", None)
    return build_model(cfg, pad_id=PAD, seed=seed, **kwargs)


def tiny_attention(
    name: str,
    *,
    causal: bool,
    feature_map: str | None,
    chunk_size: int | None = None,
    seed: int = 0,
) -> MultiHeadAttention:
    """The first layer's self-attention of a tiny model using kind `name`, in eval mode:
    a decoder_lm's when `causal`, an encoder classifier's otherwise. Built through
    `build_model`, so every registered kind and feature map is reachable."""
    linear: dict[str, Any] = {}
    if feature_map is not None:
        linear = {"feature_map": feature_map, "chunk_size": chunk_size}
    if causal:
        cfg = tiny_config(kind="decoder_lm", decoder=name, linear=linear)
        layers = tiny_model(cfg, seed=seed).decoder.layers
    else:
        cfg = tiny_config(kind="encoder_classifier", encoder=name, linear=linear)
        layers = tiny_model(cfg, seed=seed, num_classes=2).encoder.layers
    attention = layers[0].self_attention
    assert isinstance(attention, MultiHeadAttention)
    return attention.eval()


def set_rezero_alpha(model: nn.Module, value: float = 0.5) -> None:
    """ReZero starts every branch at 0; tests must open them or they test nothing."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ReZeroResidual):
                module.alpha.fill_(value)


@dataclass
class Batch:
    src: Tensor
    src_mask: Tensor
    tgt: Tensor
    tgt_mask: Tensor


def padded_tokens(
    lengths: list[int], max_len: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random real tokens (never PAD) up to each length, PAD after; mask True where real."""
    tokens = torch.randint(1, VOCAB, (len(lengths), max_len), generator=generator)
    mask = torch.arange(max_len)[None, :] < torch.tensor(lengths)[:, None]
    return tokens.masked_fill(~mask, PAD), mask


def random_batch(src_lengths: list[int], tgt_lengths: list[int], *, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    src, src_mask = padded_tokens(src_lengths, max(max(src_lengths), 1), generator)
    tgt, tgt_mask = padded_tokens(tgt_lengths, max(tgt_lengths), generator)
    return Batch(src, src_mask, tgt, tgt_mask)


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
