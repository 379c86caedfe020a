"""A short causal depthwise convolution over the q, k and v projections (kernel 4 by
default, then SiLU), as Mamba-2, GLA and Gated DeltaNet put before their recurrences: each
position mixes in its few predecessors, which a state that only decays and adds cannot do
by itself (it sharpens local patterns such as induction heads' previous-token lookups).

The whole-sequence form keeps the `(B, L, C)` layout throughout: viewed as `(B, C, 1, L)`
it is already a channels-last image, which oneDNN's depthwise convolution reads without a
copy, and the backward pass is written by hand (a flipped-kernel convolution for the input,
K dot products along the sequence for the kernel). Autograd of `Conv1d` over the transposed `(B, C, L)` layout took
about 10x longer on a CPU (strided SiLU backward, the generic depthwise backward, copies), a
third of a 4,096-token training step of the gated kinds.

Decoding keeps the last `kernel - 1` inputs per channel as the state, so a step gives
exactly what the whole-sequence convolution gives at that position.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShortConvolution(nn.Module):
    """Causal depthwise `Conv1d` over `(B, L, C)`, then SiLU."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        assert kernel >= 2, kernel
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, padding=0)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """`x: (B, L, C)` -> `(B, L, C)`; a padded position (False in `key_padding_mask:
        (B, L)`) feeds zeros to its successors."""
        if key_padding_mask is not None:
            x = x * key_padding_mask[..., None].to(x.dtype)
        weight, bias = self.conv.weight[:, 0, :], self.conv.bias
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # What autocast does to Conv1d: the convolution in the autocast dtype.
            dtype = torch.get_autocast_dtype(device)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        with torch.autocast(device, enabled=False):
            out: Tensor = _CausalConvSiLU.apply(x, weight, bias)
        return out

    def step(self, x: Tensor, cache: Tensor | None) -> tuple[Tensor, Tensor]:
        """One position `x: (B, 1, C)` with `cache: (B, kernel - 1, C)`, the inputs before
        it (None: zeros, the start of the sequence) -> output `(B, 1, C)`, new cache."""
        if cache is None:
            cache = x.new_zeros(x.shape[0], self.kernel - 1, x.shape[2])
        window = torch.cat([cache.to(x.dtype), x], dim=1)  # (B, kernel, C)
        weight = self.conv.weight[:, 0, :].t()  # (kernel, C)
        out = (window * weight).sum(dim=1, keepdim=True)
        if self.conv.bias is not None:
            out = out + self.conv.bias
        return F.silu(out), window[:, 1:]

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"


def _depthwise(x: Tensor, weight: Tensor, bias: Tensor | None, *, causal: bool) -> Tensor:
    """`out_t = sum_j weight[:, j] x_{t - K + 1 + j}` (causal) or `sum_j weight[:, j]
    x_{t + j}` (anticausal), zeros beyond the ends, plus `bias`.

    Shapes: `x: (B, L, C)`, `weight: (C, K)`, `bias: (C,)`; returns `(B, L, C)`, contiguous.
    """
    channels, kernel = weight.shape
    length = x.shape[1]
    image = x.transpose(1, 2).unsqueeze(2)  # (B, C, 1, L): channels-last strides, no copy
    out = F.conv2d(image, weight[:, None, None, :], bias, padding=(0, kernel - 1), groups=channels)
    out = out.squeeze(2).transpose(1, 2)  # (B, L + K - 1, C)
    return out[:, :length] if causal else out[:, kernel - 1 :]


class _CausalConvSiLU(torch.autograd.Function):
    """`silu(causal depthwise conv(x) + bias)` over `x: (B, L, C)`, `weight: (C, K)`,
    `bias: (C,)` or None; saves the input and the pre-activation."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        pre = _depthwise(x, weight, bias, causal=True)
        ctx.save_for_backward(x, weight, pre)
        ctx.has_bias = bias is not None
        return F.silu(pre)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight, pre = ctx.saved_tensors
        grad_pre = torch.ops.aten.silu_backward(grad.contiguous(), pre)
        kernel, length = weight.shape[1], x.shape[1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # x_s reaches out_{s + K - 1 - j} through weight[:, j]: the flipped kernel, forward.
            grad_x = _depthwise(grad_pre, weight.flip(-1), None, causal=False)
        if ctx.needs_input_grad[1]:
            # weight[:, j] multiplies x_{t - shift}, shift = K - 1 - j, for t >= shift.
            # vecdot multiplies and sums in one pass (half the time of a product, then a sum).
            grad_weight = torch.stack(
                [
                    torch.linalg.vecdot(grad_pre[:, shift:], x[:, : length - shift], dim=1).sum(0)
                    for shift in range(kernel - 1, -1, -1)
                ],
                dim=-1,
            )
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_pre.sum((0, 1))
        return grad_x, grad_weight, grad_bias
