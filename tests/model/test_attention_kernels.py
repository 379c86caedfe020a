"""Every attention kind against a plainly written quadratic masked reference in float64.

Kernels come from the registry through `build_model`, so a new kind or feature map is
tested here without touching this file. Softmax kinds are compared with a masked softmax;
kinds with a feature map with `A = phi(q) phi(k)^T`, masked entries zeroed, rows normalised
with the same smallest denominator. phi is the module's own feature map: the attention algebra, masking
and chunking are under test here; FAVOR+ itself is tested in test_feature_maps.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.model.attention import (
    ATTENTIONS,
    FEATURE_MAPS,
    CausalLinearAttention,
    FavorFeatureMap,
    LinearAttention,
    MultiHeadAttention,
)
from seq2seq.model.attention.base import SMALLEST_DENOMINATOR, Attention

B, H, DH = 4, 4, 8


def kernel_cases() -> Iterator[Any]:
    """(kind, causal, feature_map) for every direction each registered kind supports."""
    for name, cls in sorted(ATTENTIONS.items()):
        maps = FEATURE_MAPS if cls.uses_feature_map else (None,)
        directions = [
            c for c, ok in ((True, cls.supports_causal), (False, cls.supports_bidirectional)) if ok
        ]
        for causal in directions:
            for feature_map in maps:
                label = f"{name}-{'causal' if causal else 'bidirectional'}" + (
                    f"-{feature_map}" if feature_map else ""
                )
                yield pytest.param(name, causal, feature_map, id=label)


CAUSAL_CASES = [p for p in kernel_cases() if p.values[1]]
BIDIRECTIONAL_CASES = [p for p in kernel_cases() if not p.values[1]]


def reference(
    kernel: Attention,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    *,
    causal: bool,
) -> Tensor:
    """Quadratic masked attention in float64; rows with no key to attend give zeros."""
    lq, lk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril()
    if kernel.uses_feature_map:
        with torch.no_grad():
            phi_q = kernel.feature_map(q, is_query=True).double()  # type: ignore[operator]
            phi_k = kernel.feature_map(k, is_query=False).double()  # type: ignore[operator]
        weights = (phi_q @ phi_k.transpose(-1, -2)) * allowed
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(SMALLEST_DENOMINATOR)
    else:
        scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v.double()


def qkv(lq: int, lk: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, H, lq, DH, generator=generator),
        torch.randn(B, H, lk, DH, generator=generator),
        torch.randn(B, H, lk, DH, generator=generator),
    )


def padding_mask(length: int) -> Tensor:
    """Rows: all real; right padding; left padding (early queries see no causal key);
    all padding (no query sees any key)."""
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, length * 2 // 3 :] = False
    mask[2, : length // 3] = False
    mask[3] = False
    return mask


@pytest.mark.parametrize("padded", [False, True], ids=["no-mask", "padded"])
@pytest.mark.parametrize(("name", "causal", "feature_map"), list(kernel_cases()))
def test_self_attention_matches_quadratic_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
    padded: bool,
) -> None:
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    q, k, v = qkv(13, 13, seed=1)
    mask = padding_mask(13) if padded else None
    with torch.no_grad():
        out = kernel(q, k, v, mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(
        out.double(), reference(kernel, q, k, v, mask, causal=causal), atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize(("name", "causal", "feature_map"), BIDIRECTIONAL_CASES)
def test_cross_attention_matches_quadratic_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    kernel = make_attention(name, causal=causal, feature_map=feature_map).attention
    q, k, v = qkv(7, 11, seed=2)
    mask = padding_mask(11)
    with torch.no_grad():
        out = kernel(q, k, v, mask)
    assert out.shape == (B, H, 7, DH)
    torch.testing.assert_close(
        out.double(), reference(kernel, q, k, v, mask, causal=False), atol=2e-5, rtol=1e-4
    )


@pytest.mark.parametrize(("name", "causal", "feature_map"), CAUSAL_CASES)
def test_step_matches_forward(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """The decoding recurrence (KV cache, or (S, z)) gives the full pass's outputs."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    q, k, v = qkv(10, 10, seed=3)
    state = None
    steps = []
    with torch.no_grad():
        full = kernel(q, k, v, None)
        for t in range(10):
            out, state = kernel.step(
                q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state
            )
            steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize(
    ("chunk_size", "length"),
    [(4, 1), (4, 3), (4, 4), (4, 12), (4, 11), (1, 1), (1, 6), (64, 64), (64, 70)],
    ids=lambda value: str(value),
)
def test_chunked_causal_linear_matches_recurrence_and_reference(
    make_attention: Callable[..., MultiHeadAttention],
    chunk_size: int,
    length: int,
    feature_map: str,
) -> None:
    kernel = make_attention(
        "causal_linear", causal=True, feature_map=feature_map, chunk_size=chunk_size
    ).attention
    assert kernel.chunk_size == chunk_size
    q, k, v = qkv(length, length, seed=4)
    state = None
    steps = []
    with torch.no_grad():
        chunked = kernel(q, k, v, None)
        for t in range(length):
            out, state = kernel.step(
                q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state
            )
            steps.append(out)
    torch.testing.assert_close(chunked, torch.cat(steps, dim=2), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(
        chunked.double(), reference(kernel, q, k, v, None, causal=True), atol=2e-5, rtol=1e-4
    )
    # One constant-size float32 state: sum phi(k) v^T with the normalizer as a last column.
    assert set(state) == {"S"}  # type: ignore[arg-type]
    m = kernel.feature_map.num_features  # type: ignore[union-attr]
    assert state["S"].shape == (B, H, m, DH + 1)  # type: ignore[index]
    assert state["S"].dtype == torch.float32  # type: ignore[index]


@pytest.mark.parametrize("causal", [True, False], ids=["causal-self", "cross"])
def test_softmax_attention_weights_are_rows_over_real_keys_and_match_output(
    make_attention: Callable[..., MultiHeadAttention], causal: bool
) -> None:
    mha = make_attention("softmax", causal=causal, feature_map=None)
    lq, lk = (9, 9) if causal else (6, 9)
    x = torch.randn(B, lq, 32)
    context = None if causal else torch.randn(B, lk, 32)
    mask = padding_mask(lk)
    with torch.no_grad():
        weights = mha.attention_weights(x, context, mask)
        out = mha(x, context, mask)
    assert weights.shape == (B, H, lq, lk)

    allowed = mask[:, None, None, :].expand(B, 1, lq, lk)
    if causal:
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril()
    has_key = allowed.any(-1).expand(B, H, lq)
    torch.testing.assert_close(weights.sum(-1)[has_key], torch.ones(int(has_key.sum())))
    assert (weights.sum(-1)[~has_key] == 0).all()
    assert (weights.masked_select(~allowed) == 0).all()

    # The same output through the weights: out_proj(merge(weights @ v_heads)).
    source = x if context is None else context
    v = mha.v_proj(source).view(B, lk, H, DH).transpose(1, 2)
    merged = (weights @ v).transpose(1, 2).reshape(B, lq, H * DH)
    torch.testing.assert_close(mha.out_proj(merged).detach(), out, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "causal", "feature_map"), [p for p in kernel_cases() if p.values[2] is not None]
)
def test_attention_weights_raise_for_linear_kinds(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    mha = make_attention(name, causal=causal, feature_map=feature_map)
    with pytest.raises(TypeError, match="softmax attention only"):
        mha.attention_weights(torch.randn(2, 5, 32))


@pytest.mark.parametrize("causal", [True, False])
def test_favor_rows_of_large_norm_keys_still_average_the_values(causal: bool) -> None:
    """FAVOR+ features of keys with std 5 are tiny but still weights, so constant values
    come back unchanged (with a denominator + 1e-12, some causal outputs were 3.6e-17)."""
    generator = torch.Generator().manual_seed(0)
    dh = 16
    feature_map = FavorFeatureMap(dh, num_features=64, seed=0, layer_id=1)
    kernel = CausalLinearAttention(feature_map) if causal else LinearAttention(feature_map)
    q, k = (torch.randn(2, 2, 48, dh, generator=generator) * 5 for _ in range(2))
    v = torch.full((2, 2, 48, dh), 3.0)
    out = kernel(q, k, v, None)
    assert torch.allclose(out, v, rtol=1e-4), out.min()
    if causal:
        state = None
        for t in range(k.shape[2]):
            step_out, state = kernel.step(
                q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state
            )
            assert torch.allclose(step_out, v[:, :, t : t + 1], rtol=1e-4)
