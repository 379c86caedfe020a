"""Tiny model configs, built models and padded token batches.

Sizes are tiny (D=32, 4 heads so Dh=8, 2 layers, vocabulary 20) so the model tests run in
seconds on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq.config.model import (
    DecoderConfig,
    EncoderConfig,
    LinearAttentionConfig,
    ModelConfig,
)
from seq2seq.data.batching import PairBatch, collate_pairs
from seq2seq.model import ModelKind, build_model
from seq2seq.model.attention import ATTENTIONS, MultiHeadAttention
from seq2seq.model.norms import ReZeroResidual

VOCAB = 20
PAD = 0
D_MODEL = 32
HEADS = 4
HEAD_DIM = D_MODEL // HEADS
TINY_WINDOW = 3
"""`model.window` of a tiny model with a `sliding_window` stack."""


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
    if "sliding_window" in {encoder, decoder, cross}:
        values["window"] = TINY_WINDOW  # shorter than the tests' sequences: the band bites
    values.update(fields)
    return KindConfig(
        kind=kind,  # type: ignore[arg-type]
        encoder=EncoderConfig(layers=layers, self_attention=encoder),
        decoder=DecoderConfig(layers=layers, self_attention=decoder, cross_attention=cross),
        linear=LinearAttentionConfig(**(linear or {})),
        **values,
    )


def linear_settings(*kinds: str, **settings: Any) -> dict[str, Any]:
    """`settings` for `model.linear` when one of `kinds` uses a feature map, else none: the
    config checks reject linear settings that no stack reads."""
    return settings if any(ATTENTIONS[kind].uses_feature_map for kind in kinds) else {}


def tiny_model(cfg: ModelConfig, *, seed: int = 0, **kwargs: Any) -> Any:
    """`build_model` at the tiny vocabulary and PAD (unless `kwargs` say otherwise), of the
    config's kind (a `KindConfig`'s, else encoder-decoder); typed Any so tests reach
    submodules freely."""
    kwargs.setdefault("src_vocab_size", VOCAB)
    kwargs.setdefault("tgt_vocab_size", VOCAB)
    kwargs.setdefault("pad_id", PAD)
    kwargs.setdefault("kind", getattr(cfg, "kind", "encoder_decoder"))
    if kwargs["kind"] != "encoder_classifier":
        kwargs.pop("num_classes", None)
    return build_model(cfg, seed=seed, **kwargs)


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


def reversal_batches(sizes: list[int], *, vocab: int = VOCAB) -> list[PairBatch]:
    """Batches of `sizes[i]` examples each (of 4, 5, ... tokens, random ids below `vocab`,
    the target the source reversed), the same on every call: for driving a Trainer step
    by step. Ids 0, 1, 2 are pad, bos and eos."""
    generator = torch.Generator().manual_seed(0)

    def example(length: int) -> dict[str, Any]:
        ids = torch.randint(3, vocab, (length,), generator=generator).tolist()
        return {"source_ids": ids, "target_ids": ids[::-1]}

    return [
        collate_pairs([example(4 + i) for i in range(size)], pad_id=PAD, bos_id=1, eos_id=2)
        for size in sizes
    ]


def continue_on_cpu(
    model: nn.Module,
    prompts: list[list[int]],
    settings: Any,
    *,
    max_len: int = 64,
    max_tokens: int = 256,
) -> Any:
    """`continue_prompts` of a language model in float32 on the CPU, without a progress
    bar: each prompt's n-best continuations (`settings`: a GenerationConfig)."""
    from seq2seq.tasks.language_modeling_evaluation import continue_prompts

    with torch.no_grad():
        return continue_prompts(
            model,
            prompts,
            settings,
            max_len=max_len,
            max_tokens=max_tokens,
            device=torch.device("cpu"),
            autocast_dtype=None,
            progress=False,
        )
