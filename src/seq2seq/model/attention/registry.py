"""The attention registry: one entry per kind, named as in the config, each able to build
itself from `AttentionSettings` (plain values: modules never read a config)."""

from __future__ import annotations

from seq2seq.model.attention.base import Attention, AttentionSettings
from seq2seq.model.attention.causal_linear import CausalLinearAttention
from seq2seq.model.attention.delta import DeltaAttention
from seq2seq.model.attention.gated_linear import GatedLinearAttention
from seq2seq.model.attention.linear import LinearAttention
from seq2seq.model.attention.sliding_window import SlidingWindowAttention
from seq2seq.model.attention.softmax import SoftmaxAttention

ATTENTIONS: dict[str, type[Attention]] = {
    "softmax": SoftmaxAttention,
    "linear": LinearAttention,
    "causal_linear": CausalLinearAttention,
    "gated_linear": GatedLinearAttention,
    "delta": DeltaAttention,
    "sliding_window": SlidingWindowAttention,
}


def build_attention(name: str, settings: AttentionSettings) -> Attention:
    """The attention kind `name` built from `settings`; an unknown name fails listing the
    registered ones."""
    try:
        kind = ATTENTIONS[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not an attention kind; choose one of {sorted(ATTENTIONS)}"
        ) from None
    return kind.from_settings(settings)
