"""Random per-head inputs and padding masks for calling attention modules directly."""

from __future__ import annotations

import torch
from torch import Tensor


def random_qkv(
    query_shape: tuple[int, int, int, int],
    key_length: int | None = None,
    *,
    seed: int,
    requires_grad: bool = False,
) -> list[Tensor]:
    """float32 `q: (B, H, Lq, Dh)` of `query_shape` and `k, v: (B, H, Lk, Dh)` (`Lk =
    key_length`, default Lq), drawn in that order from one generator seeded `seed`;
    leaves that require grad when asked."""
    batch, heads, length, head_dim = query_shape
    key_shape = (batch, heads, length if key_length is None else key_length, head_dim)
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(shape, generator=generator).requires_grad_(requires_grad)
        for shape in (query_shape, key_shape, key_shape)
    ]


def padding_mask(batch: int, length: int) -> Tensor:
    """`(batch, length)` bool, True where a key is real. Row 0 all real; row 1 right padding
    (the last third); row 2 left padding (the first third, so early causal queries see no
    key); row 3 all padding (no query sees any key); any further rows all real."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    if batch > 1:
        mask[1, length * 2 // 3 :] = False
    if batch > 2:
        mask[2, : length // 3] = False
    if batch > 3:
        mask[3] = False
    return mask
