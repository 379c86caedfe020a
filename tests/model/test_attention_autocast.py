"""Every attention kind under bf16 autocast on CPU: long, large-magnitude inputs stay finite
through the multi-head wrapper, and so do decoding steps. Kinds that keep their sums in
float32 (all but `AUTOCAST_DTYPE_KINDS`) must also give, on bf16 inputs, the float32 answer
to bf16's rounding of the output, and keep a float32 decoding state (input caches aside)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from seq2seq.model.attention import ATTENTIONS, MultiHeadAttention
from seq2seq.model.attention.multihead import CONV_CACHE
from support.attention_cases import attention_cases, kind_choices, takes_qkv_only
from support.tiny_models import D_MODEL

LENGTH = 1024
AUTOCAST_DTYPE_KINDS = {"softmax", "sliding_window"}
"""Kinds that compute in the autocast dtype by design (SDPA's fused kernels, and a cache of
bf16 keys and values); every other kind keeps float32 sums and states."""
INPUT_CACHES = {CONV_CACHE}
"""Decoding-state entries that cache recent inputs rather than sum them (the wrapper's short
convolution), and so hold the activations' dtype, as the whole-sequence pass sees them."""


def sums_in_float32(name: str) -> bool:
    return name not in AUTOCAST_DTYPE_KINDS


def test_the_kinds_exempt_from_float32_sums_are_registered() -> None:
    assert set(ATTENTIONS) >= AUTOCAST_DTYPE_KINDS


def long_padded_mask() -> torch.Tensor:
    """Two rows of LENGTH: all real, and the second half padding."""
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    mask[1, LENGTH // 2 :] = False
    return mask


@pytest.mark.parametrize(("name", "causal", "feature_map"), attention_cases())
def test_bf16_autocast_long_large_inputs_stay_finite(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    mha = make_attention(name, causal=causal, feature_map=feature_map)
    x = torch.randn(2, LENGTH, D_MODEL) * 10
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, None, long_padded_mask())
    assert out.shape == x.shape and out.isfinite().all()


@pytest.mark.parametrize(
    ("name", "causal", "feature_map"),
    attention_cases(where=lambda name: takes_qkv_only(name) and sums_in_float32(name)),
)
def test_bf16_inputs_give_the_float32_answer(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """The kernel on bf16 per-head inputs: float32 inside, bf16 out, as float32 would give."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map).attention
    mask = long_padded_mask()
    q, k, v = (torch.randn(3, 2, 4, LENGTH, 8) * 10).to(torch.bfloat16).unbind(0)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = kernel(q, k, v, mask)
        high = kernel(q.float(), k.float(), v.float(), mask)
    assert low.dtype == torch.bfloat16 and low.isfinite().all()
    torch.testing.assert_close(low.float(), high, atol=0.05, rtol=1e-2)


@pytest.mark.parametrize(("name", "feature_map"), kind_choices(causal=True))
def test_bf16_autocast_decoding_stays_finite_and_keeps_float32_sums(
    make_attention: Callable[..., MultiHeadAttention], name: str, feature_map: str | None
) -> None:
    mha = make_attention(name, causal=True, feature_map=feature_map)
    x = torch.randn(2, 6, D_MODEL) * 10
    state = None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for t in range(6):
            out, state = mha.step(x[:, t : t + 1], state, position=t)
            assert out.isfinite().all()
    assert state is not None and state
    if sums_in_float32(name):
        for key, tensor in state.items():
            if key in INPUT_CACHES:
                continue
            assert tensor.dtype == torch.float32, (
                f"{name}'s decoding state {key!r} is {tensor.dtype} under bf16 autocast: keep "
                "it in float32, or list the kind in AUTOCAST_DTYPE_KINDS if it computes in the "
                "autocast dtype by design"
            )
