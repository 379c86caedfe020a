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

SMALLEST_DENOMINATOR = 1e-30
"""Linear attentions' denominators are clamped to at least this; a row whose denominator
is exactly 0 (relu features, or FAVOR+ features that all underflowed) gives 0 and no
gradient. Features are non-negative, so numerator / denominator is a weighted average of
the values at any scale: an additive epsilon competed with the tiny real denominators of
large-norm FAVOR+ keys (1e-12 made causal outputs of keys of std 4 at Dh=64 about 0.35 of
their values' average). Clamping much lower (to float32's smallest normal, 1e-38) let
1 / denominator overflow in the backward pass of large inputs under bf16 autocast."""


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
