"""Linear kinds under bf16 autocast on CPU: long, large-magnitude inputs stay finite, the sums
and the decoding state stay float32 (so bf16 inputs give the float32 answer, to bf16's
rounding of the output)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS, MultiHeadAttention

LINEAR_KINDS = sorted(name for name, cls in ATTENTIONS.items() if cls.uses_feature_map)
LENGTH = 1024


@pytest.fixture
def linear_attention(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> Callable[..., MultiHeadAttention]:
    def build(name: str, feature_map: str) -> MultiHeadAttention:
        linear = {"feature_map": feature_map}
        if ATTENTIONS[name].supports_causal:
            layers = make_model(
                make_config(kind="decoder_lm", decoder=name, linear=linear)
            ).decoder.layers
        else:
            cfg = make_config(kind="encoder_classifier", encoder=name, linear=linear)
            layers = make_model(cfg, num_classes=2).encoder.layers
        return layers[0].self_attention.eval()

    return build


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize("name", LINEAR_KINDS)
def test_bf16_autocast_long_large_inputs(
    linear_attention: Callable[..., MultiHeadAttention], name: str, feature_map: str
) -> None:
    mha = linear_attention(name, feature_map)
    x = torch.randn(2, LENGTH, 32) * 10
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    mask[1, LENGTH // 2 :] = False
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, None, mask)
    assert out.shape == x.shape and out.isfinite().all()

    # The kernel on bf16 per-head inputs: float32 inside, bf16 out, as float32 would give.
    q, k, v = (torch.randn(3, 2, 4, LENGTH, 8) * 10).to(torch.bfloat16).unbind(0)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = mha.attention(q, k, v, mask)
        high = mha.attention(q.float(), k.float(), v.float(), mask)
    assert low.dtype == torch.bfloat16 and low.isfinite().all()
    torch.testing.assert_close(low.float(), high, atol=0.05, rtol=1e-2)


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
def test_bf16_autocast_decoding_state_stays_float32(
    linear_attention: Callable[..., MultiHeadAttention], feature_map: str
) -> None:
    mha = linear_attention("causal_linear", feature_map)
    x = torch.randn(2, 6, 32) * 10
    state = None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for t in range(6):
            out, state = mha.step(x[:, t : t + 1], state, position=t)
            assert out.isfinite().all()
    assert state is not None and state
    for tensor in state.values():
        assert tensor.dtype == torch.float32
