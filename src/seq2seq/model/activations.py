"""Activation registry: plain activations and the gated (GLU) family built on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ActivationSpec:
    """`make()` builds the nonlinearity; `gated` selects `W2 (act(W1 x) * W3 x)`."""

    make: Callable[[], nn.Module]
    gated: bool


ACTIVATIONS: dict[str, ActivationSpec] = {
    "gelu": ActivationSpec(nn.GELU, gated=False),
    "relu": ActivationSpec(nn.ReLU, gated=False),
    "silu": ActivationSpec(nn.SiLU, gated=False),
    "swiglu": ActivationSpec(nn.SiLU, gated=True),
    "geglu": ActivationSpec(nn.GELU, gated=True),
    "reglu": ActivationSpec(nn.ReLU, gated=True),
}


def activation_spec(name: str) -> ActivationSpec:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"model.activation={name!r} is unknown; choose one of {sorted(ACTIVATIONS)}"
        ) from None
