"""Dropout whose mask is cheap to draw on the CPU.

torch's CPU dropout draws one Bernoulli sample per element (`bernoulli_`): on 2 cores
that alone took a quarter of a training step of the 7.4M-parameter G2P model, whose step
is 1.6x faster with this module. Here the mask comes from full-range 64-bit random
integers read as four 16-bit uniforms each, so the generator runs once per four
elements; the drop probability is rounded to a multiple of 1/65536 and the kept values
are scaled so that the expectation is exact. The mask
is drawn from torch's default CPU generator, so `torch.manual_seed` and the RNG state
saved in checkpoints govern it as they govern `nn.Dropout`.

On other devices (CUDA's fused dropout kernel is fast), under `torch.compile`, and for
a p that rounds to 0 or 1 (within 2^-17 of either) the module is
`nn.functional.dropout`. `scripts/bench_dropout.py` times both.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

_LEVELS = 1 << 16
_INT16_MIN = -(1 << 15)


def _has_cheap_mask(p: float) -> bool:
    """Whether `p`, rounded to a multiple of 1/65536, is neither 0 nor 1."""
    return 0 < round(p * _LEVELS) < _LEVELS


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[Tensor, float]:
    """A uint8 mask of `shape`, 1 with probability about `1 - p`, and the scale that
    makes `x * mask * scale` unbiased for exactly that probability."""
    dropped_levels = round(p * _LEVELS)
    if not _has_cheap_mask(p):
        raise ValueError(f"dropout probability {p} rounds to {dropped_levels}/{_LEVELS}")
    count = shape.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), (1 << 63) - 1)  # every bit uniform
    uniform = words.view(torch.int16)[:count].view(shape)
    mask = (uniform >= _INT16_MIN + dropped_levels).view(torch.uint8)
    return mask, _LEVELS / (_LEVELS - dropped_levels)


class _ScaledMask(torch.autograd.Function):
    """`x * mask * scale`, saving only the one-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, mask: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale  # type: ignore[attr-defined]
        return x.mul(mask).mul_(scale)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None]:
        (mask,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad.mul(mask).mul_(ctx.scale), None, None  # type: ignore[attr-defined]


class Dropout(nn.Module):
    """Zeroes each element with probability `p` in training and scales the rest by about
    `1 / (1 - p)`; the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability {p} must be in [0, 1]")
        self.p = p
        self._cheap_mask = _has_cheap_mask(p)

    def forward(self, x: Tensor) -> Tensor:
        """`x: (...) -> (...)`."""
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or not self._cheap_mask or torch.compiler.is_compiling():
            return nn.functional.dropout(x, self.p, training=True)
        mask, scale = keep_mask(x.shape, self.p, x.device)
        output: Tensor = _ScaledMask.apply(x, mask, scale)
        return output

    def extra_repr(self) -> str:
        return f"p={self.p}"
