"""Attention cases derived from the registry, for parametrizing the contract tests.

Every list here is computed from `ATTENTIONS` (crossed with `FEATURE_MAPS` where a kind
uses a feature map), so a kind added to the registry joins every test that takes these
cases without an edit to the test. Tests that call an `Attention` module directly with
`(q, k, v, mask)` take `where=takes_qkv_only`: a kind that needs more per-position inputs
from the multi-head wrapper (a non-empty `extra_inputs`) is tested through
`MultiHeadAttention` or a whole model instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS
from support.tiny_models import tiny_attention

CAUSAL: list[str] = sorted(name for name, kind in ATTENTIONS.items() if kind.supports_causal)
"""The kinds a decoder's self-attention may use."""
BIDIRECTIONAL: list[str] = sorted(
    name for name, kind in ATTENTIONS.items() if kind.supports_bidirectional
)
"""The kinds an encoder's self-attention may use."""
CROSS: list[str] = sorted(name for name, kind in ATTENTIONS.items() if kind.supports_cross)
"""The kinds a cross-attention may use (an encoder's self-attention too)."""


@cache
def extra_inputs(name: str) -> tuple[str, ...]:
    """What kind `name` takes beyond q, k, v and the mask: the per-position inputs the
    multi-head wrapper projects for it. Read from a tiny instance built with the default
    settings, since a kind may declare them per instance (a gate that reads its input)."""
    kind = ATTENTIONS[name]
    instance = tiny_attention(
        name, causal=kind.supports_causal, feature_map=feature_maps(name)[0]
    ).attention
    return tuple(getattr(instance, "extra_inputs", ()))


def takes_qkv_only(name: str) -> bool:
    """Whether an `Attention` of kind `name` can be called alone with `(q, k, v, mask)`."""
    return not extra_inputs(name)


def crosses_qkv_only(name: str) -> bool:
    """Whether kind `name` can be a cross-attention called alone with `(q, k, v, mask)`."""
    return ATTENTIONS[name].supports_cross and takes_qkv_only(name)


def feature_maps(name: str) -> list[str | None]:
    """Every registered feature map for a kind that uses one, else `[None]`."""
    return list(FEATURE_MAPS) if ATTENTIONS[name].uses_feature_map else [None]


def case_id(name: str, causal: bool, feature_map: str | None) -> str:
    """`softmax-causal`, `linear-bidirectional-favor`, ..."""
    direction = "causal" if causal else "bidirectional"
    return f"{name}-{direction}" + (f"-{feature_map}" if feature_map else "")


def attention_cases(
    *, causal: bool | None = None, where: Callable[[str], bool] | None = None
) -> list[Any]:
    """`pytest.param(name, causal, feature_map)` for every direction each registered kind
    supports, crossed with every feature map where the kind uses one; `causal` keeps one
    direction, `where(name)` the kinds it accepts."""
    cases = []
    for name, kind in sorted(ATTENTIONS.items()):
        if where is not None and not where(name):
            continue
        for direction, supported in (
            (True, kind.supports_causal),
            (False, kind.supports_bidirectional),
        ):
            if not supported or causal not in (None, direction):
                continue
            for feature_map in feature_maps(name):
                cases.append(
                    pytest.param(
                        name, direction, feature_map, id=case_id(name, direction, feature_map)
                    )
                )
    return cases


def kind_choices(*, causal: bool, where: Callable[[str], bool] | None = None) -> list[Any]:
    """`pytest.param(name, feature_map)` for every kind usable in one direction (a decoder's
    self-attention when `causal`, else an encoder's or a cross-attention), crossed with every
    feature map where the kind uses one; ids `softmax`, `causal_linear-favor`, ..."""
    return [
        pytest.param(name, feature_map, id=name + (f"-{feature_map}" if feature_map else ""))
        for name, _, feature_map in (
            case.values for case in attention_cases(causal=causal, where=where)
        )
    ]
