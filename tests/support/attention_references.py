"""Plain quadratic attention in float64, the reference every attention kind is compared with.

Written from the definitions, sharing no computation with the package (it reads only
FAVOR+'s projection buffer, a window's width and the documented smallest denominator): a
masked softmax (over a band of keys for `sliding_window`), and for the feature-map kinds
`phi(q) phi(k)^T` masked (padded keys out; `j <= i` when causal), row-normalised, times v.
phi is written out too: FAVOR+ from the module's own projection buffer, with none of the
module's stabilizers (detached scales that cancel in the normalisation), so gradients
through the feature map into q and k are checked as well.
Everything is differentiable in q, k and v; a query row with no key to attend gives zeros.
Under rotary positions (`rotate`), softmax turns q and k; the feature-map kinds turn the
numerator's features and not the normalizer's (RoFormer, eq. 19).

`reference(name, kernel, q, k, v, mask, causal=...)` computes kind `name`'s, as `REFERENCES`
says. Every kind that can be called alone with `(q, k, v, mask)` must have an entry there:
tests/model/test_attention_references.py fails otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention import FavorFeatureMap, FeatureMap
from seq2seq.model.attention.base import SMALLEST_DENOMINATOR, Attention

Rotate = Callable[[Tensor], Tensor]
"""Turns `(B, H, L, n)` rows by their positions (rotary), in float64."""


def allowed_keys(
    key_padding_mask: Tensor | None,
    *,
    batch: int,
    query_length: int,
    key_length: int,
    causal: bool,
    window: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """`(B, 1, Lq, Lk)` bool, True where query i may attend key j: a real key (per
    `key_padding_mask: (B, Lk)`), `j <= i` when `causal`, and with a `window` W, `i - j <
    W` (causal) or `|i - j| < W`."""
    allowed = torch.ones(batch, 1, query_length, key_length, dtype=torch.bool, device=device)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    queries = torch.arange(query_length, device=device)[:, None]
    keys = torch.arange(key_length, device=device)[None, :]
    if causal:
        allowed = allowed & (keys <= queries)
    if window is not None:
        allowed = allowed & ((queries - keys).abs() < window)
    return allowed


def _allowed_for(
    q: Tensor, k: Tensor, key_padding_mask: Tensor | None, causal: bool, window: int | None
) -> Tensor:
    return allowed_keys(
        key_padding_mask,
        batch=q.shape[0],
        query_length=q.shape[-2],
        key_length=k.shape[-2],
        causal=causal,
        window=window,
        device=q.device,
    )


def softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    *,
    causal: bool,
    window: int | None = None,
    rotate: Rotate | None = None,
) -> Tensor:
    """`softmax(q k^T / sqrt(Dh)) v` over the allowed keys (`allowed_keys`), in float64.

    `q: (B, H, Lq, Dh)`, `k, v: (B, H, Lk, Dh)`, `key_padding_mask: (B, Lk)`; returns
    `(B, H, Lq, Dh)`."""
    q, k, v = q.double(), k.double(), v.double()
    if rotate is not None:
        q, k = rotate(q), rotate(k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    allowed = _allowed_for(q, k, key_padding_mask, causal, window)
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)
    return weights @ v


def normalised_linear_attention(
    phi_q: Tensor,
    phi_k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    *,
    causal: bool,
    rotate: Rotate | None = None,
) -> Tensor:
    """`(phi(q) phi(k)^T) v` over the allowed keys, each row divided by its sum, in float64.

    `phi_q: (B, H, Lq, m)`, `phi_k: (B, H, Lk, m)`, `v: (B, H, Lk, Dh)`; returns
    `(B, H, Lq, Dh)`. The denominator is clamped to the package's documented smallest
    one, so a row with nothing to attend gives zeros (and, a clamp rather than a where,
    a zero gradient, not NaN)."""
    phi_q, phi_k, v = phi_q.double(), phi_k.double(), v.double()
    allowed = _allowed_for(phi_q, phi_k, key_padding_mask, causal, None)
    weights = (phi_q @ phi_k.transpose(-1, -2)) * allowed
    turned = weights
    if rotate is not None:
        turned = (rotate(phi_q) @ rotate(phi_k).transpose(-1, -2)) * allowed
    return (turned @ v) / weights.sum(-1, keepdim=True).clamp_min(SMALLEST_DENOMINATOR)


def _favor(feature_map: FeatureMap, x: Tensor) -> Tensor:
    """FAVOR+ as in the paper: `exp(w . x' - |x'|^2 / 2) / sqrt(m)`, `x' = x Dh^-1/4`."""
    assert isinstance(feature_map, FavorFeatureMap)
    projection = feature_map.projection.double()
    scaled = x * x.shape[-1] ** -0.25
    logits = scaled @ projection.T - 0.5 * (scaled * scaled).sum(-1, keepdim=True)
    return torch.exp(logits) / math.sqrt(projection.shape[0])


PLAIN_FEATURES: dict[str, Callable[[FeatureMap, Tensor], Tensor]] = {
    "favor": _favor,
    "elu": lambda feature_map, x: F.elu(x) + 1.0,
    "relu": lambda feature_map, x: F.relu(x),
}
"""Each feature map (by registry name, `FeatureMap.kind`) written plainly: `(module, x)`
to float64 features of `x: (B, H, L, Dh)`."""


def plain_features(feature_map: FeatureMap, x: Tensor) -> Tensor:
    """phi(x) in float64, written from the definition of `feature_map`'s kind."""
    try:
        features = PLAIN_FEATURES[feature_map.kind]
    except KeyError:
        raise LookupError(
            f"feature map {feature_map.kind!r} has no plain form; add one to PLAIN_FEATURES "
            "in tests/support/attention_references.py"
        ) from None
    return features(feature_map, x.double())


def _softmax(kernel: Attention) -> dict[str, Any]:
    return {}


def _softmax_over_window(kernel: Attention) -> dict[str, Any]:
    window = getattr(kernel, "window", None)
    assert isinstance(window, int), type(kernel).__name__
    return {"window": window}


def _normalised_linear(kernel: Attention) -> dict[str, Any]:
    feature_map = getattr(kernel, "feature_map", None)
    assert isinstance(feature_map, FeatureMap), type(kernel).__name__
    return {"features": lambda x: plain_features(feature_map, x)}


REFERENCES: dict[str, Callable[[Attention], dict[str, Any]]] = {
    "softmax": _softmax,
    "sliding_window": _softmax_over_window,
    "linear": _normalised_linear,
    "causal_linear": _normalised_linear,
}
"""Each attention kind's plain reference, by registry name, as what it reads from the module
under test: nothing (a masked softmax), a `window` (a softmax over a band of keys), or
`features` (normalised linear attention with phi written plainly)."""


def reference(
    name: str,
    kernel: Attention,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    *,
    causal: bool,
    rotate: Rotate | None = None,
) -> Tensor:
    """The plain reference of attention kind `name` for the module `kernel`: float64
    `(B, H, Lq, Dh)`. A kind without an entry in `REFERENCES` fails saying so."""
    try:
        settings = REFERENCES[name](kernel)
    except KeyError:
        raise LookupError(
            f"attention kind {name!r} has no plain reference; add one to REFERENCES in "
            "tests/support/attention_references.py"
        ) from None
    features = settings.pop("features", None)
    if features is None:
        return softmax_attention(
            q, k, v, key_padding_mask, causal=causal, rotate=rotate, **settings
        )
    return normalised_linear_attention(
        features(q), features(k), v, key_padding_mask, causal=causal, rotate=rotate
    )
