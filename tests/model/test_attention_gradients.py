"""Gradients of every attention kind against a float64 quadratic reference, and gradcheck.

The forward comparisons in test_attention_kernels.py cannot see a wrong backward pass: a
normalizer detached from the graph leaves every output as it was. Here the gradients of
q, k and v come from `torch.autograd.grad` of `sum(out * g)` (g a random cotangent) and
are compared with those of the plain float64 reference of each kind
(`support.attention_references`: a masked softmax, or `phi(q) phi(k)^T` masked,
row-normalised, times v, with phi written out too), so the gradient through each feature
map, that is into q and k, is checked as well. Lengths span several causal-linear chunks
and are not multiples of the chunk size; batches are padded; padded query rows are not
compared, only required finite. Kinds that take more than q, k and v are checked for
padding through the multi-head wrapper, which computes what they take.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS, MultiHeadAttention
from seq2seq.model.attention.base import Attention
from support.attention_cases import attention_cases, crosses_qkv_only, takes_qkv_only
from support.attention_inputs import padding_mask, random_qkv
from support.attention_references import reference
from support.tiny_models import D_MODEL

B, H, DH = 3, 2, 8
LENGTH = 13  # four chunks of 4, the last one short
CASES = attention_cases(where=takes_qkv_only)


def inputs(lq: int, lk: int, *, seed: int) -> list[Tensor]:
    """q: (B, H, lq, Dh), k, v: (B, H, lk, Dh), leaves that require grad."""
    return random_qkv((B, H, lq, DH), lk, seed=seed, requires_grad=True)


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
    name: str,
    kernel: Attention,
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
        lambda q, k, v, m: reference(name, kernel, q, k, v, m, causal=causal),
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
    mask = padding_mask(B, LENGTH) if padded else None
    compare(
        name,
        kernel,
        inputs(LENGTH, LENGTH, seed=1),
        mask,
        causal=causal,
        query_mask=mask,
    )


@pytest.mark.parametrize(
    ("name", "causal", "feature_map"), attention_cases(causal=False, where=crosses_qkv_only)
)
def test_cross_attention_gradients_match_float64_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """7 queries attend 11 padded keys: gradients equal the reference's."""
    kernel = make_attention(name, causal=False, feature_map=feature_map).attention
    compare(
        name,
        kernel,
        inputs(7, 11, seed=2),
        padding_mask(B, 11),
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
    mask = padding_mask(B, LENGTH)
    compare(
        "causal_linear",
        kernel,
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
    mask = padding_mask(B, LENGTH)
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


@pytest.mark.parametrize(("name", "causal", "feature_map"), attention_cases())
def test_padding_reaches_no_real_output_through_the_multi_head_wrapper(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """Every kind with what the wrapper computes for it from each position: with only
    real query rows in the loss, padded positions (right, left, a whole sequence) get
    exactly no gradient; with every row in the loss, every gradient is finite. A
    kind that can cross-attend: padded context positions get no gradient."""
    mha = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4)
    generator = torch.Generator().manual_seed(6)
    batch = 4  # padding_mask's rows: all real, right, left and all padding
    mask = padding_mask(batch, LENGTH)
    x = torch.randn(batch, LENGTH, D_MODEL, generator=generator, requires_grad=True)
    out = mha(x, None, mask)
    assert torch.isfinite(out).all()
    (every_row,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    assert torch.isfinite(every_row).all()
    (real_rows,) = torch.autograd.grad((out * mask[..., None]).sum(), x)
    assert (real_rows.masked_select(~mask[..., None]) == 0).all()
    assert real_rows.abs().sum() > 0
    if causal or not ATTENTIONS[name].supports_cross:
        return
    context = torch.randn(batch, 11, D_MODEL, generator=generator, requires_grad=True)
    context_mask = padding_mask(batch, 11)
    out = mha(x[:, :7], context, context_mask)
    (grad,) = torch.autograd.grad(out.sum(), context)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert (grad.masked_select(~context_mask[..., None]) == 0).all()
