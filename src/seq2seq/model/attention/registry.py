"""The attention registry: one entry per kind, named as in the config."""

from __future__ import annotations

from seq2seq.model.attention.base import Attention
from seq2seq.model.attention.causal_linear import CausalLinearAttention
from seq2seq.model.attention.linear import LinearAttention
from seq2seq.model.attention.softmax import SoftmaxAttention

ATTENTIONS: dict[str, type[Attention]] = {
    "softmax": SoftmaxAttention,
    "linear": LinearAttention,
    "causal_linear": CausalLinearAttention,
}


def attention_class(name: str, *, field: str) -> type[Attention]:
    """The class registered as `name`; `field` is the config key, for the error message."""
    try:
        return ATTENTIONS[name]
    except KeyError:
        raise ValueError(
            f"{field}={name!r} is not an attention kind; choose one of {sorted(ATTENTIONS)}"
        ) from None
