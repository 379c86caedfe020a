"""A short causal depthwise convolution over the q, k and v projections (kernel 4 by
default, then SiLU), as Mamba-2, GLA and Gated DeltaNet put before their recurrences: each
position mixes in its few predecessors, which a state that only decays and adds cannot do
by itself (it sharpens local patterns such as induction heads' previous-token lookups).

Decoding keeps the last `kernel - 1` inputs per channel as the state, so a step gives
exactly what the whole-sequence convolution gives at that position.
"""

from __future__ import annotations

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
        padded = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))
        return F.silu(self.conv(padded)).transpose(1, 2)

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
