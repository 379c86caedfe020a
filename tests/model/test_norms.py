"""RMSNorm against a hand computation, and its pre- and post-norm residual forms."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.model.norms import NORMS, RMSNorm, norm_scheme

D = 32


def rms_by_hand(x: Tensor, gain: Tensor, eps: float) -> Tensor:
    """`g * x / sqrt(mean(x^2) + eps)`, written out in float64."""
    x = x.double()
    return gain.double() * x / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps)


def test_rmsnorm_values_and_gradients_match_the_hand_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    norm = RMSNorm(D)
    with torch.no_grad():  # a gain other than ones, and rows of very different scales
        norm.weight.copy_(torch.randn(D, generator=generator))
    x = torch.randn(3, 5, D, generator=generator) * torch.tensor([0.01, 1.0, 30.0])[:, None, None]
    x.requires_grad_()
    cotangent = torch.randn(3, 5, D, generator=generator)
    out = norm(x)
    grad_x, grad_gain = torch.autograd.grad((out * cotangent).sum(), (x, norm.weight))

    x64 = x.detach().double().requires_grad_()
    gain64 = norm.weight.detach().double().requires_grad_()
    want = rms_by_hand(x64, gain64, norm.eps)
    want_x, want_gain = torch.autograd.grad((want * cotangent.double()).sum(), (x64, gain64))
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_x.double(), want_x, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad_gain.double(), want_gain, atol=1e-5, rtol=1e-4)
    # No mean is removed (that would be LayerNorm): a constant row keeps its sign.
    assert torch.allclose(RMSNorm(D)(torch.full((1, D), 3.0)), torch.ones(1, D), atol=1e-5)


def test_rmsnorm_schemes_wrap_sublayers_pre_and_post() -> None:
    """pre: `x + f(RMS(x))` with a final RMSNorm; post: `RMS(x + f(x))`, no final norm."""
    assert set(NORMS["rmsnorm"]) == {"pre", "post"}
    x = torch.randn(2, 4, D)
    sublayer = nn.Linear(D, D)
    pre = norm_scheme("rmsnorm", "pre")
    residual = pre.residual(D, 0.0)
    assert isinstance(pre.final_norm(D), RMSNorm)
    gain = torch.ones(D)
    torch.testing.assert_close(
        residual(x, sublayer).double(),
        x.double() + sublayer(rms_by_hand(x, gain, 1e-6).float()).double(),
        atol=1e-5,
        rtol=1e-5,
    )
    post = norm_scheme("rmsnorm", "post")
    residual = post.residual(D, 0.0)
    assert isinstance(post.final_norm(D), nn.Identity)
    torch.testing.assert_close(
        residual(x, sublayer).double(), rms_by_hand(x + sublayer(x), gain, 1e-6)
    )
