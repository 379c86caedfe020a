"""Linear attentions at 4,096 tokens with large activations (inputs x 30) under bf16 autocast
on CPU, and on fp16 tensors where this CPU has the ops: outputs and gradients stay finite.

The multi-head modules come from `build_model`, as training builds them."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config.model import DecoderConfig, EncoderConfig, LinearAttentionConfig, ModelConfig
from seq2seq.model import build_model
from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS, MultiHeadAttention

LINEAR_KINDS = sorted(name for name, cls in ATTENTIONS.items() if cls.uses_feature_map)
LENGTH = 4096
SCALE = 30.0
D_MODEL, HEADS = 32, 4


def _attention(kind: str, feature_map: str) -> MultiHeadAttention:
    """Self-attention of the first layer of the stack that takes `kind`."""
    causal = ATTENTIONS[kind].supports_causal and not ATTENTIONS[kind].supports_bidirectional
    cfg = ModelConfig(
        d_model=D_MODEL,
        heads=HEADS,
        d_ff=64,
        dropout=0.0,
        max_len=LENGTH + 2,
        encoder=EncoderConfig(layers=1, self_attention="softmax" if causal else kind),
        decoder=DecoderConfig(layers=1, self_attention=kind if causal else "softmax"),
        linear=LinearAttentionConfig(feature_map=feature_map),
    )
    model = build_model(cfg, src_vocab_size=16, tgt_vocab_size=16, pad_id=0, seed=0)
    stack = model.decoder if causal else model.encoder
    mha = stack.layers[0].self_attention  # type: ignore[union-attr, index]
    assert isinstance(mha, MultiHeadAttention)
    assert type(mha.attention) is ATTENTIONS[kind]
    return mha


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, LENGTH, D_MODEL, generator=generator) * SCALE
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    mask[1, LENGTH // 3 :] = False
    return x, mask


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize("kind", LINEAR_KINDS)
def test_bf16_autocast_long_large_inputs_stay_finite(kind: str, feature_map: str) -> None:
    mha = _attention(kind, feature_map).train()
    x, mask = _inputs()
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mha(x, None, mask)
    assert out.shape == x.shape
    assert out.isfinite().all(), f"{kind}/{feature_map}: non-finite output under bf16"
    out.float().square().mean().backward()
    assert x.grad is not None and x.grad.isfinite().all(), "non-finite input gradient"
    for name, parameter in mha.named_parameters():
        assert parameter.grad is not None and parameter.grad.isfinite().all(), name


def _fp16_unsupported() -> str | None:
    """Why this CPU cannot run the fp16 ops the kernels use, or None when it can."""
    try:
        a = torch.randn(2, 4, 8, dtype=torch.float16)
        torch.exp(a @ a.transpose(-1, -2)).cumsum(-1)
        torch.nn.functional.elu(a)
    except RuntimeError as error:
        return f"fp16 on this CPU: {error}"
    return None


@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
@pytest.mark.parametrize("kind", LINEAR_KINDS)
def test_fp16_tensors_long_large_inputs_stay_finite(kind: str, feature_map: str) -> None:
    reason = _fp16_unsupported()
    if reason is not None:
        pytest.skip(reason)
    mha = _attention(kind, feature_map).eval()
    x, mask = _inputs()
    heads = (2, HEADS, LENGTH, D_MODEL // HEADS)
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, *heads, generator=generator) * SCALE).half().unbind(0)
    with torch.no_grad():
        try:
            kernel_out = mha.attention(q, k, v, mask)
            with torch.autocast("cpu", dtype=torch.float16):
                module_out = mha(x, None, mask)
        except RuntimeError as error:
            if "Half" not in str(error):
                raise
            pytest.skip(f"fp16 {kind}/{feature_map} op missing on this CPU: {error}")
    assert kernel_out.dtype == torch.float16 and kernel_out.isfinite().all()
    assert module_out.isfinite().all()
