"""Rotary positions (RoFormer, Su et al., 2021): rotate by the absolute position, attend by
the relative one.

The `n` columns of a per-head tensor `(B, H, L, n)` form `n / 2` pairs `(x_i, x_{i + n/2})`;
the pair of the row at position p turns by the angle `p * base^(-2i / n)`. A dot product of
a row at p with a row at s turned the same way depends on `s - p` only, so every kind that
multiplies rotated queries by rotated keys sees relative positions and no position is added
to the embeddings (`model.position=rotary`).

Softmax attention turns its queries and keys (width Dh). The linear kinds turn their
features (width m) in the numerator only, RoFormer's eq. 19:
`out_i = sum_j (R_i phi(q_i))^T (R_j phi(k_j)) v_j / sum_j phi(q_i)^T phi(k_j)`: the
normalizer stays that of the unrotated, non-negative features, so it never crosses zero.
Both widths must be even (checked with the config). Cross-attention is never rotated:
source and target positions count different sequences, so their difference means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

ROTARY_BASE = 10000.0
"""RoFormer's base: the slowest pair turns `base^(-(n-2)/n)` radians per position."""


@dataclass(frozen=True)
class Rotary:
    """The rotation of rows at positions `offset, offset + 1, ...`."""

    base: float = ROTARY_BASE
    offset: int = 0
    """Position of the first row: 0 for a whole sequence, the decoding position for a step."""

    def at(self, offset: int) -> Rotary:
        """The same rotation for rows starting at position `offset`."""
        return replace(self, offset=offset)

    def angles(self, length: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """float64 cos and sin `(length, width / 2)` of the rows' angles (in float32, angles
        at position 16,384 would be off by about 1e-3 radians)."""
        if width % 2:
            raise ValueError(f"rotary positions turn pairs of columns; width {width} is odd")
        positions = torch.arange(
            self.offset, self.offset + length, dtype=torch.float64, device=device
        )
        frequencies = self.base ** (
            -torch.arange(0, width, 2, dtype=torch.float64, device=device) / width
        )
        angles = positions[:, None] * frequencies[None, :]
        return angles.cos(), angles.sin()

    def rotate(self, x: Tensor) -> Tensor:
        """`x: (B, H, L, n)`, row l at position `offset + l` -> rotated, `(B, H, L, n)` in x's
        dtype; the products are float32 (float64 for float64 x)."""
        work = torch.promote_types(x.dtype, torch.float32)
        cos, sin = (t.to(work) for t in self.angles(x.shape[-2], x.shape[-1], x.device))
        first, second = x.to(work).chunk(2, dim=-1)
        rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
        return rotated.to(x.dtype)
