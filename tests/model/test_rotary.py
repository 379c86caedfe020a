"""Rotary positions (`model.position=rotary`) against plain references: the rotation written
out here, each kind's attention from `support.attention_references`.

- The rotation: each pair `(x_i, x_{i + n/2})` as the complex number `x_i + i x_{i + n/2}`,
  times `exp(i p theta_i)`, `theta_i = 10000^(-2i / n)`, in float64.
- The relative-position property: shifting every position leaves softmax scores, and every
  kind's output, unchanged; a constant query against a constant key scores by distance.
- Softmax with hand-rotated q and k, and the linear kinds as RoFormer's eq. 19 in float64
  (rotated features in the numerator, plain ones in the normalizer), causal or not, padded:
  outputs and gradients in q, k and v.
- The model: self-attention is turned, cross-attention never; nothing is added to the
  embeddings. Incremental decoding against the full pass, beams reordered, is in
  test_incremental_decoding.py (parametrized over every position kind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.model.attention import CausalLinearAttention, EluFeatureMap, MultiHeadAttention
from seq2seq.model.attention.rotary import Rotary
from support.attention_cases import attention_cases, takes_qkv_only
from support.attention_inputs import padding_mask, random_qkv
from support.attention_references import reference

B, H, DH = 3, 2, 8
LENGTH = 13  # four chunks of 4, the last one short
CASES = attention_cases(where=takes_qkv_only)


def rotate_by_hand(x: Tensor, offset: int) -> Tensor:
    """float64 `(B, H, L, n)`: row l's pairs as complex numbers times `exp(i (offset + l)
    theta_i)`."""
    x = x.double()
    half = x.shape[-1] // 2
    theta = 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / x.shape[-1])
    positions = torch.arange(offset, offset + x.shape[-2], dtype=torch.float64)
    angles = positions[:, None] * theta[None, :]
    turned = torch.complex(x[..., :half], x[..., half:]) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.cat([turned.real, turned.imag], dim=-1)


def qkv(*, seed: int) -> list[Tensor]:
    return random_qkv((B, H, LENGTH, DH), seed=seed, requires_grad=True)


def test_rotation_matches_complex_multiplication() -> None:
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    for offset in (0, 5, 16_000):
        torch.testing.assert_close(Rotary(offset=offset).rotate(x), rotate_by_hand(x, offset))
    assert Rotary().at(7) == Rotary(offset=7)
    with pytest.raises(ValueError, match="width 9 is odd"):
        Rotary().rotate(torch.randn(1, 1, 2, 9))


def test_scores_depend_on_the_relative_position_only() -> None:
    """Every query the same vector, every key another: the turned scores are constant along
    each diagonal (the distance), differ across diagonals, and are unchanged when every
    position shifts by the same amount."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, DH, generator=generator)
    q = a.expand(1, 1, LENGTH, DH)
    k = b.expand(1, 1, LENGTH, DH)
    scores = {}
    for offset in (0, 3, 1000):
        rotary = Rotary(offset=offset)
        scores[offset] = (rotary.rotate(q) @ rotary.rotate(k).transpose(-1, -2))[0, 0]
    for offset in (3, 1000):
        torch.testing.assert_close(scores[offset], scores[0], atol=1e-5, rtol=1e-5)
    s = scores[0]
    for distance in range(-LENGTH + 1, LENGTH):
        diagonal = s.diagonal(distance)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal))
    assert not torch.allclose(s.diagonal(0)[0], s.diagonal(1)[0])


@pytest.mark.parametrize(("name", "causal", "feature_map"), CASES)
def test_shifting_every_position_leaves_attention_unchanged(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """Every kind's output with rows at positions 0.. equals that at 1000..; without the
    rotation it differs (the rotation does something)."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    q, k, v = (t.detach() for t in qkv(seed=1))
    mask = padding_mask(B, LENGTH)
    with torch.no_grad():
        at_zero = kernel(q, k, v, mask, Rotary())
        shifted = kernel(q, k, v, mask, Rotary(offset=1000))
        plain = kernel(q, k, v, mask)
    torch.testing.assert_close(shifted, at_zero, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(plain, at_zero, atol=1e-3)
    if hasattr(kernel, "weights"):  # the softmax scores themselves
        torch.testing.assert_close(
            kernel.weights(q, k, mask, Rotary(offset=1000)),
            kernel.weights(q, k, mask, Rotary()),
            atol=1e-5,
            rtol=1e-4,
        )


@pytest.mark.parametrize("offset", [0, 6])
@pytest.mark.parametrize(("name", "causal", "feature_map"), CASES)
def test_rotary_attention_and_gradients_match_the_float64_reference(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
    offset: int,
) -> None:
    """Outputs and d/dq, d/dk, d/dv of every kind with rotary positions from `offset` on,
    padded, length 13 in causal-linear chunks of 4, against the reference; padded query rows
    are only required finite."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map, chunk_size=4).attention
    mask = padding_mask(B, LENGTH)
    inputs = qkv(seed=2)
    cotangent = torch.randn(B, H, LENGTH, DH, generator=torch.Generator().manual_seed(3))
    cotangent = cotangent * mask[:, None, :, None]
    out = kernel(*inputs, mask, Rotary(offset=offset))
    grads = torch.autograd.grad((out * cotangent).sum(), inputs)
    plain = [t.detach().double().requires_grad_() for t in inputs]
    want = reference(
        name, kernel, *plain, mask, causal=causal, rotate=lambda x: rotate_by_hand(x, offset)
    )
    want_grads = torch.autograd.grad((want * cotangent.double()).sum(), plain)

    assert torch.isfinite(out).all()
    rows = mask  # (B, L): real query rows
    torch.testing.assert_close(
        out.double().transpose(1, 2)[rows], want.transpose(1, 2)[rows], atol=2e-5, rtol=1e-4
    )
    for which, got, expected in zip("qkv", grads, want_grads, strict=True):
        assert torch.isfinite(got).all(), which
        scale = expected.abs().max().item()
        torch.testing.assert_close(
            got.double(),
            expected,
            atol=1e-5 * scale,
            rtol=1e-4,
            msg=lambda message, which=which: f"d{which}: {message}",
        )


def test_rotary_gradcheck_of_causal_linear() -> None:
    """Finite differences through the recomputing (checkpointed) rotary path, float64 in,
    float32 inside (hence the wide step and tolerance)."""
    kernel = CausalLinearAttention(EluFeatureMap(DH), chunk_size=2)
    generator = torch.Generator().manual_seed(4)
    inputs = tuple(
        (torch.randn(1, 2, 5, DH, generator=generator, dtype=torch.float64) * 0.5).requires_grad_()
        for _ in range(3)
    )
    mask = torch.tensor([[True, True, True, False, True]])
    assert torch.autograd.gradcheck(
        lambda q, k, v: kernel(q, k, v, mask, Rotary(offset=3)),
        inputs,
        eps=1e-3,
        atol=5e-4,
        rtol=5e-3,
    )


def test_the_triton_backend_refuses_rotary_positions() -> None:
    kernel = CausalLinearAttention(EluFeatureMap(DH), backend="triton")
    q, k, v = (t.detach() for t in qkv(seed=5))
    with pytest.raises(ValueError, match="backend='triton' has no rotary form"):
        kernel(q, k, v, None, Rotary())


def test_the_model_turns_self_attention_only_and_adds_nothing_to_embeddings(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> None:
    cfg = make_config(position="rotary", decoder="causal_linear", linear={"nb_features": 10})
    model = make_model(cfg)
    for stack in (model.encoder, model.decoder):
        x = torch.randn(2, 5, 32)
        assert stack.positions(x, 3) is x
        for layer in stack.layers:
            assert layer.self_attention.rotary == Rotary()
            if layer.cross_attention is not None:
                assert layer.cross_attention.rotary is None
    assert model.decoder.layers[0].self_attention.attention.feature_map.num_features == 10
    sinusoidal = make_model(make_config(decoder="causal_linear"))
    assert sinusoidal.decoder.layers[0].self_attention.rotary is None


def test_default_favor_features_are_even_under_rotary(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> None:
    """int(Dh ln Dh) is 5 at Dh = 4: rotary rounds the default up to 6."""
    cfg = make_config(kind="decoder_lm", decoder="causal_linear", d_model=16, position="rotary")
    feature_map = make_model(cfg).decoder.layers[0].self_attention.attention.feature_map
    assert feature_map.num_features == 6
    plain = make_config(kind="decoder_lm", decoder="causal_linear", d_model=16)
    assert (
        make_model(plain).decoder.layers[0].self_attention.attention.feature_map.num_features == 5
    )


@pytest.mark.parametrize("decoder", ["softmax", "causal_linear"])
def test_rotary_under_bf16_autocast_stays_close_to_float32(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
) -> None:
    """q and k arrive in bfloat16 under autocast: they are turned in float32 and the logits
    stay within bfloat16 rounding of the float32 model's, gradients finite."""
    cfg = make_config(kind="decoder_lm", decoder=decoder, position="rotary")
    model = make_model(cfg).train()
    tokens = make_batch([1], [LENGTH, LENGTH]).tgt
    want = model(tokens, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(tokens, None)
    got.float().square().mean().backward()
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    assert all(p.grad is None or p.grad.isfinite().all() for p in model.parameters())
