"""Every attention kind against its plain quadratic reference in float64.

Kernels come from the registry through `build_model`, so a new kind or feature map is
tested here without touching this file; each kind's reference is `support`'s
(`attention_references.REFERENCES`): a masked softmax, or `A = phi(q) phi(k)^T` with phi
written from its definition, masked entries zeroed, rows normalised with the package's
smallest denominator. Kinds that take more than q, k and v cannot be called alone: the
model-level contract tests (causal leak, incremental decoding, layer combinations) and
their own ops tests cover them.
"""

from __future__ import annotations

from collections.abc import Callable

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
from seq2seq.model.attention.base import Attention
from support.attention_cases import attention_cases, crosses_qkv_only, takes_qkv_only
from support.attention_inputs import padding_mask, random_qkv
from support.attention_references import allowed_keys, reference

B, H, DH = 4, 4, 8


def qkv(lq: int, lk: int, seed: int) -> list[Tensor]:
    return random_qkv((B, H, lq, DH), lk, seed=seed)


def assert_matches_reference(
    name: str, kernel: Attention, inputs: list[Tensor], mask: Tensor | None, *, causal: bool
) -> None:
    """The kernel's output, every row, has q's shape and dtype and equals the reference's."""
    q, k, v = inputs
    with torch.no_grad():
        out = kernel(q, k, v, mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    want = reference(name, kernel, q, k, v, mask, causal=causal)
    torch.testing.assert_close(out.double(), want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("padded", [False, True], ids=["no-mask", "padded"])
@pytest.mark.parametrize(("name", "causal", "feature_map"), attention_cases(where=takes_qkv_only))
def test_self_attention_matches_quadratic_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
    padded: bool,
) -> None:
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    mask = padding_mask(B, 13) if padded else None
    assert_matches_reference(name, kernel, qkv(13, 13, seed=1), mask, causal=causal)


@pytest.mark.parametrize(
    ("name", "causal", "feature_map"), attention_cases(causal=False, where=crosses_qkv_only)
)
def test_cross_attention_matches_quadratic_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    kernel = make_attention(name, causal=causal, feature_map=feature_map).attention
    assert_matches_reference(name, kernel, qkv(7, 11, seed=2), padding_mask(B, 11), causal=False)


@pytest.mark.parametrize(
    ("name", "causal", "feature_map"), attention_cases(causal=True, where=takes_qkv_only)
)
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
    want = reference("causal_linear", kernel, q, k, v, None, causal=True)
    torch.testing.assert_close(chunked.double(), want, atol=2e-5, rtol=1e-4)
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
    mask = padding_mask(B, lk)
    with torch.no_grad():
        weights = mha.attention_weights(x, context, mask)
        out = mha(x, context, mask)
    assert weights.shape == (B, H, lq, lk)

    allowed = allowed_keys(mask, batch=B, query_length=lq, key_length=lk, causal=causal)
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
    ("name", "causal", "feature_map"),
    attention_cases(where=lambda name: not hasattr(ATTENTIONS[name], "weights")),
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
