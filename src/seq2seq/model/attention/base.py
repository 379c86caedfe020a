"""The interface every attention kind shares.

`forward(q, k, v, key_padding_mask)` attends per-head tensors; causal kinds also have
`step(q, k, v, state)`, which attends one new position given the state of the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

AttentionState = dict[str, Tensor]
"""Per-layer decoding state; every tensor has the batch on dim 0 so beams can reorder it."""

EPSILON = 1e-12
"""Added to linear attentions' denominators, which relu features can make exactly zero.
Small, since it competes with real denominators: FAVOR+ ones of large-norm keys are tiny
(1e-6 made causal weights over keys of std 3 sum to 0.71 instead of 1). The sums are
float32, where 1e-12 is far above the smallest normal number."""


class Attention(nn.Module):
    """Base class. Subclasses set which directions they support.

    Shapes: `q: (B, H, Lq, Dh)`, `k, v: (B, H, Lk, Dh)`, `key_padding_mask: (B, Lk)` bool,
    True where a key is real; output `(B, H, Lq, Dh)`.
    """

    supports_causal: bool = False
    supports_bidirectional: bool = False
    uses_feature_map: bool = False
    causal: bool = False

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def step(
        self, q: Tensor, k: Tensor, v: Tensor, state: AttentionState | None
    ) -> tuple[Tensor, AttentionState]:
        """Attend position t given the prefix's state: `q, k, v: (B, H, 1, Dh)`."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental step")


@contextmanager
def float32_region(device: torch.device) -> Iterator[None]:
    """Turn autocast off so sums and normalizers stay in float32 under bf16/fp16."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield
