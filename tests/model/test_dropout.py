"""The CPU-fast Dropout against what nn.Dropout promises: the drop rate, an unbiased scale,
the gradient of the same mask, seeding, and the identity in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.model.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_drops_a_share_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 3.0)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=3e-3)
    scale = y[kept].unique()
    assert scale.numel() == 1 and scale.item() == pytest.approx(3.0 / (1 - p), rel=1e-4)
    # The scale is that of the rounded probability, so the expectation is exact.
    mask, exact_scale = keep_mask(x.shape, p, x.device)
    assert (1 - round(p * 65536) / 65536) * exact_scale == pytest.approx(1.0, abs=1e-12)
    assert mask.dtype == torch.uint8 and mask.shape == x.shape
    assert y.mean().item() == pytest.approx(3.0, rel=0.01)


def test_mask_bits_are_independent_of_position() -> None:
    """Every 16-bit lane of the 64-bit draws is uniform: each of the four positions a
    word fills keeps the same share."""
    torch.manual_seed(1)
    mask, _ = keep_mask(torch.Size([400_000]), 0.25, torch.device("cpu"))
    lanes = mask.view(-1, 4).float().mean(0)
    assert torch.allclose(lanes, torch.full((4,), 0.75), atol=5e-3), lanes


def test_gradient_flows_through_the_kept_elements_only() -> None:
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    dropout = Dropout(0.3).train()
    y = dropout(x)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert x.grad is not None
    factor = torch.where(x.detach() != 0, y.detach() / x.detach(), 0)
    assert torch.allclose(x.grad, upstream * factor)


def test_seeded_draws_repeat_and_successive_draws_differ() -> None:
    dropout = Dropout(0.5).train()
    x = torch.ones(4096)
    torch.manual_seed(3)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_dtype_shape_and_works_on_views(dtype: torch.dtype) -> None:
    x = torch.randn(8, 16, 12, dtype=dtype).transpose(0, 2)  # not contiguous
    y = Dropout(0.2).train()(x)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    assert torch.allclose(y[kept].float(), (x[kept] * 1.25).float(), rtol=1e-2)


def test_identity_in_eval_mode_or_at_zero_and_zeros_at_one() -> None:
    x = torch.randn(10, 10)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    # Probabilities within 2^-17 of 0 or 1 are nn.functional.dropout's to draw.
    nearly_all = Dropout(1 - 1e-6).train()(torch.ones(100_000))
    assert 0 <= (nearly_all != 0).sum().item() < 10
    nearly_none = Dropout(1e-6).train()(torch.ones(100_000))
    assert (nearly_none == 0).sum().item() < 10
    with pytest.raises(ValueError, match=r"dropout probability 1.5 must be in \[0, 1\]"):
        Dropout(1.5)


def test_same_statistics_as_nn_dropout() -> None:
    """The two differ in their draws, not in what they do on average."""
    torch.manual_seed(4)
    x = torch.randn(300, 300)
    ours = torch.stack([Dropout(0.2).train()(x) for _ in range(20)]).mean(0)
    torch_own = torch.stack([nn.Dropout(0.2).train()(x) for _ in range(20)]).mean(0)
    assert (ours - x).abs().mean().item() == pytest.approx(
        (torch_own - x).abs().mean().item(), rel=0.05
    )
