"""Sliding-window softmax: a plain masked softmax over the band as the reference, decoding
past the window with a ring buffer, and the settings that choose it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from seq2seq.config.model import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.model import build_model
from seq2seq.model.attention.sliding_window import SlidingWindowAttention
from seq2seq.model.checks import check_model


def _reference(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, window: int, causal: bool
) -> Tensor:
    """Float64 softmax over the keys each query may see, written out per query."""
    batch, heads, length, dim = q.shape
    out = torch.zeros(batch, heads, length, dim, dtype=torch.float64)
    for b in range(batch):
        for i in range(length):
            keys = [
                j
                for j in range(length)
                if (i - window < j <= i if causal else abs(i - j) < window)
                and (mask is None or bool(mask[b, j]))
            ]
            if not keys:
                continue
            scores = q[b, :, i, None].double() @ k[b, :, keys].double().transpose(-1, -2)
            weights = torch.softmax(scores / math.sqrt(dim), dim=-1)
            out[b, :, i] = (weights @ v[b, :, keys].double())[:, 0]
    return out


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [1, 3, 4, 20])  # 9 > 2W: blocked; else one band
def test_matches_a_masked_softmax_over_the_band(causal: bool, window: int) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    attention = SlidingWindowAttention(causal=causal, window=window)
    out = attention(q, k, v, mask)
    expected = _reference(q, k, v, mask, window, causal)
    torch.testing.assert_close(out, expected)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.sum(), (q, k, v))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)


def test_decoding_keeps_only_the_window_and_equals_the_whole_sequence() -> None:
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 11, 4) for _ in range(3))
    attention = SlidingWindowAttention(causal=True, window=4)
    full = attention(q, k, v, None)
    state = None
    for t in range(11):
        out, state = attention.step(
            q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state
        )
        torch.testing.assert_close(out, full[:, :, t : t + 1], atol=1e-5, rtol=1e-5)
        assert state["k"].shape[2] == 4  # memory O(W), whatever the position


def test_a_hybrid_with_a_window_decodes_as_it_runs_whole() -> None:
    cfg = ModelConfig(
        d_model=16,
        heads=2,
        d_ff=32,
        dropout=0.0,
        max_len=64,
        window=3,
        decoder=DecoderConfig(layers=2, self_attention="delta+sliding_window"),
    )
    check_model(cfg, kind="decoder_lm")
    model = build_model(cfg, kind="decoder_lm", src_vocab_size=9, tgt_vocab_size=9, pad_id=0)
    model.eval()
    tokens = torch.randint(1, 9, (2, 10))
    full = model(tokens, None)
    state = model.init_state()
    for t in range(10):
        logits, state = model.step(tokens[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("encoder", "window", "message"),
    [
        ("softmax", 8, r"model\.window=8 is read only by sliding_window attention"),
        ("sliding_window", 0, r"model\.window=0 must be a positive number of keys"),
    ],
)
def test_window_settings_fail_naming_the_field(encoder: str, window: int, message: str) -> None:
    cfg = ModelConfig(
        d_model=16, heads=2, window=window, encoder=EncoderConfig(self_attention=encoder)
    )
    with pytest.raises(ValueError, match=message):
        check_model(cfg, kind="encoder_classifier")
