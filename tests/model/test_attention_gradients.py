"""Gradients of every attention kind against a float64 quadratic reference, and gradcheck.

The forward comparisons in test_attention_kernels.py cannot see a wrong backward pass: a
normalizer detached from the graph leaves every output as it was. Here the gradients of
q, k and v come from `torch.autograd.grad` of `sum(out * g)` (g a random cotangent) and
are compared with those of a reference written plainly in float64: a masked softmax, or
for the linear kinds `phi(q) phi(k)^T` masked (causal: j <= i; padded keys out),
row-normalised, times v. The reference's phi is written out here too (FAVOR+ from the
module's own projection buffer, with no stabilizer: the module's are detached scales
that cancel in the normalisation), so the gradient through each feature map, that is
into q and k, is checked as well. Lengths span several causal-linear chunks and are not
multiples of the chunk size; batches are padded; padded query rows are not compared,
only required finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS, FavorFeatureMap, MultiHeadAttention
from seq2seq.model.attention.base import Attention

B, H, DH = 3, 2, 8
LENGTH = 13  # four chunks of 4, the last one short

PlainFeatures = Callable[[Attention, Tensor], Tensor]


def _favor(kernel: Attention, x: Tensor) -> Tensor:
    """FAVOR+ as in the paper: `exp(w . x' - |x'|^2 / 2) / sqrt(m)`, `x' = x Dh^-1/4`."""
    feature_map = kernel.feature_map
    assert isinstance(feature_map, FavorFeatureMap)
    projection = feature_map.projection.double()
    scaled = x * x.shape[-1] ** -0.25
    logits = scaled @ projection.T - 0.5 * (scaled * scaled).sum(-1, keepdim=True)
    return torch.exp(logits) / math.sqrt(projection.shape[0])


PLAIN_FEATURES: dict[str, PlainFeatures] = {
    "favor": _favor,
    "elu": lambda kernel, x: F.elu(x) + 1.0,
    "relu": lambda kernel, x: F.relu(x),
}


def gradient_cases() -> Iterator[Any]:
    """(kind, causal, feature_map) for every direction of every registered kind."""
    for name, cls in sorted(ATTENTIONS.items()):
        maps = FEATURE_MAPS if cls.uses_feature_map else (None,)
        for causal, supported in ((True, cls.supports_causal), (False, cls.supports_bidirectional)):
            for feature_map in maps if supported else ():
                label = f"{name}-{'causal' if causal else 'bidirectional'}"
                yield pytest.param(
                    name, causal, feature_map, id=label + (f"-{feature_map}" if feature_map else "")
                )


CASES = list(gradient_cases())


def reference(
    kernel: Attention,
    feature_map: str | None,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    *,
    causal: bool,
) -> Tensor:
    """Quadratic masked attention in float64, differentiable in q, k and v; a row with no
    key to attend gives zeros."""
    q, k, v = q.double(), k.double(), v.double()
    lq, lk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool).tril()
    if feature_map is None:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1).nan_to_num(0.0)
    else:
        phi = PLAIN_FEATURES[feature_map]
        weights = (phi(kernel, q) @ phi(kernel, k).transpose(-1, -2)) * allowed
        # A clamp (not a where) keeps the gradient of an all-zero row finite: zero.
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)
    return weights @ v


def inputs(lq: int, lk: int, *, seed: int, dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """q: (B, H, lq, Dh), k, v: (B, H, lk, Dh), leaves that require grad."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(B, H, lq, DH), (B, H, lk, DH), (B, H, lk, DH)]
    return [
        torch.randn(shape, generator=generator, dtype=dtype).requires_grad_() for shape in shapes
    ]


def padding_mask(length: int) -> Tensor:
    """Rows: all real; right padding; left padding (early causal queries see no key)."""
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, length * 2 // 3 :] = False
    mask[2, : length // 3] = False
    return mask


def output_and_gradients(
    attend: Callable[..., Tensor], qkv: list[Tensor], mask: Tensor | None, cotangent: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """`attend(q, k, v, mask)` and the gradients of `sum(out * cotangent)` in q, k, v."""
    out = attend(*qkv, mask)
    gradients = torch.autograd.grad((out * cotangent).sum(), qkv)
    return out, gradients


def _named(name: str) -> Callable[[str], str]:
    """An `assert_close` message that says which gradient differs."""
    return lambda message: f"{name}: {message}"


def compare(
    kernel: Attention,
    feature_map: str | None,
    qkv: list[Tensor],
    mask: Tensor | None,
    *,
    causal: bool,
    query_mask: Tensor | None,
) -> None:
    """The kernel's output and q, k, v gradients against the reference's, real query rows
    only (the cotangent is zero on padded queries); padded query rows must be finite."""
    generator = torch.Generator().manual_seed(7)
    cotangent = torch.randn(qkv[0].shape, generator=generator, dtype=torch.float64)
    if query_mask is not None:
        cotangent = cotangent * query_mask[:, None, :, None]
    out, grads = output_and_gradients(kernel, qkv, mask, cotangent.to(qkv[0].dtype))
    want_out, want_grads = output_and_gradients(
        lambda q, k, v, m: reference(kernel, feature_map, q, k, v, m, causal=causal),
        [t.detach().double().requires_grad_() for t in qkv],
        mask,
        cotangent,
    )
    assert torch.isfinite(out).all()
    rows = (
        torch.ones(out.shape[0], out.shape[2], dtype=torch.bool)
        if query_mask is None
        else query_mask
    )
    torch.testing.assert_close(
        out.double().transpose(1, 2)[rows], want_out.transpose(1, 2)[rows], atol=2e-5, rtol=1e-4
    )
    for which, got, want in zip("qkv", grads, want_grads, strict=True):
        assert torch.isfinite(got).all(), which
        # float32 inside the kernel: tolerances relative to the gradient's own scale.
        scale = want.abs().max().item()
        torch.testing.assert_close(
            got.double(), want, atol=1e-5 * scale, rtol=1e-4, msg=_named(f"d{which}")
        )


@pytest.mark.parametrize("padded", [False, True], ids=["no-mask", "padded"])
@pytest.mark.parametrize(("name", "causal", "feature_map"), CASES)
def test_self_attention_gradients_match_float64_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
    padded: bool,
) -> None:
    """Self-attention of length 13 (chunks of 4 for causal_linear): output and d/dq,
    d/dk, d/dv equal the reference's, with and without padding."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    mask = padding_mask(LENGTH) if padded else None
    compare(
        kernel,
        feature_map,
        inputs(LENGTH, LENGTH, seed=1),
        mask,
        causal=causal,
        query_mask=mask,
    )


@pytest.mark.parametrize(("name", "causal", "feature_map"), [c for c in CASES if not c.values[1]])
def test_cross_attention_gradients_match_float64_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """7 queries attend 11 padded keys: gradients equal the reference's."""
    kernel = make_attention(name, causal=False, feature_map=feature_map).attention
    compare(
        kernel,
        feature_map,
        inputs(7, 11, seed=2),
        padding_mask(11),
        causal=False,
        query_mask=None,
    )


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize("chunk_size", [1, 5, 13, 64])
def test_causal_linear_gradients_across_chunk_sizes(
    make_attention: Callable[..., MultiHeadAttention], chunk_size: int, feature_map: str
) -> None:
    """Length 13 in chunks of 1 (every position its own chunk), 5 (a short last chunk),
    13 (one full chunk) and 64 (one chunk longer than the sequence), padded: the
    gradients through the per-chunk states and their exclusive cumulative sum equal the
    reference's."""
    kernel = make_attention(
        "causal_linear", causal=True, feature_map=feature_map, chunk_size=chunk_size
    ).attention
    mask = padding_mask(LENGTH)
    compare(
        kernel,
        feature_map,
        inputs(LENGTH, LENGTH, seed=3),
        mask,
        causal=True,
        query_mask=mask,
    )


@pytest.mark.parametrize(("name", "causal", "feature_map"), CASES)
def test_padding_gets_no_gradient_and_every_gradient_is_finite(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """With every output row in the loss, padded query rows and a sequence of padding
    only included: all gradients are finite, and padded keys and values get none (they
    contribute nothing to any output)."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    mask = padding_mask(LENGTH)
    mask[0] = False
    qkv = inputs(LENGTH, LENGTH, seed=5)
    out = kernel(*qkv, mask)
    grads = torch.autograd.grad(out.sum(), qkv)
    assert torch.isfinite(out).all()
    for which, grad in zip("qkv", grads, strict=True):
        assert torch.isfinite(grad).all(), which
    padded = ~mask[:, None, :, None]
    for grad in grads[1:]:
        assert (grad.masked_select(padded) == 0).all()


def _away_from_zero(x: Tensor) -> Tensor:
    """|x| >= 0.1 elementwise, so gradcheck's steps never cross relu's kink."""
    return torch.where(x < 0, x - 0.1, x + 0.1)


@pytest.mark.parametrize(("name", "causal", "feature_map"), CASES)
def test_gradcheck(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """`torch.autograd.gradcheck` (finite differences against the backward pass) on a
    tiny float64 case: length 5 in chunks of 2, one padded key. The linear kinds compute
    in float32 whatever the input dtype, so their finite differences need a wider step
    and tolerance; a wrong backward (a detached normalizer) is off by far more."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=2).attention
    generator = torch.Generator().manual_seed(4)
    q, k, v = (
        _away_from_zero(torch.randn(1, 2, 5, DH, generator=generator, dtype=torch.float64))
        .mul(0.5)
        .requires_grad_()
        for _ in range(3)
    )
    mask = torch.tensor([[True, True, True, False, True]])
    eps, atol, rtol = (1e-6, 1e-5, 1e-3) if feature_map is None else (1e-3, 5e-4, 5e-3)
    assert torch.autograd.gradcheck(
        lambda q, k, v: kernel(q, k, v, mask), (q, k, v), eps=eps, atol=atol, rtol=rtol
    )
