"""Sliding-window softmax attention (`sliding_window`): each query attends the last W keys
(`model.window`) up to its own position, or, in both directions, the keys fewer than W
positions away. The local layer of hybrid stacks (Griffin, Samba, Gated DeltaNet-H2):
softmax's precise recall over a window, at a cost linear in the length.

Whole sequences are cut into blocks of W queries; each block attends through SDPA to the
keys of its own block and the one before (and, in both directions, the one after), under
the band's mask: O(L W) time and memory instead of a masked L x L product. Decoding keeps a
ring buffer of the last W keys and values (rotary positions are applied before caching,
so the order of the slots does not matter to softmax): memory O(W) per layer, whatever
the position.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import Attention, AttentionSettings, AttentionState
from seq2seq.model.attention.rotary import Rotary


def band_mask(
    key_padding_mask: Tensor | None, length: int, window: int, causal: bool, device: torch.device
) -> Tensor:
    """Boolean `(B or 1, 1, L, L)`, True where query i may attend key j: `i - W < j <= i`
    (causal) or `|i - j| < W`, and j is real."""
    positions = torch.arange(length, device=device)
    offset = positions[:, None] - positions[None, :]
    band = (offset >= 0) & (offset < window) if causal else offset.abs() < window
    mask = band[None, None]
    if key_padding_mask is not None:
        mask = mask & key_padding_mask[:, None, None, :]
    return mask


class SlidingWindowAttention(Attention):
    supports_causal = True
    supports_bidirectional = True

    def __init__(self, *, causal: bool, window: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert window >= 1, window
        self.causal = causal
        self.window = window
        self.dropout = dropout

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> SlidingWindowAttention:
        return cls(causal=settings.causal, window=settings.window, dropout=settings.dropout)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        dropout = self.dropout if self.training else 0.0
        length, window = q.shape[-2], self.window
        if length <= 2 * window:  # a block or two: one banded product is cheaper
            mask = band_mask(key_padding_mask, length, window, self.causal, q.device)
            empty = ~mask.any(-1, keepdim=True)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout)
            return out.masked_fill(empty, 0.0)
        return self._blocked(q, k, v, key_padding_mask, dropout)

    def _blocked(
        self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, dropout: float
    ) -> Tensor:
        """Blocks of W queries against the keys of their neighbourhood of blocks.

        Shapes: `q, k, v: (B, H, L, Dh)`, `key_padding_mask: (B, L)`; L is padded to
        `nb` blocks of W; each block sees `n` blocks of keys (2 causal, 3 both ways)."""
        batch, length = q.shape[0], q.shape[2]
        window = self.window
        blocks = -(-length // window)
        pad = blocks * window - length
        real = torch.ones(batch, length, dtype=torch.bool, device=q.device)
        if key_padding_mask is not None:
            real = key_padding_mask
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        real = F.pad(real, (0, pad), value=False)
        offsets = (-1, 0) if self.causal else (-1, 0, 1)

        def neighbours(x: Tensor) -> Tensor:
            """`(..., nb * W, X) -> (..., nb, n * W, X)`: each block's neighbourhood."""
            chunks = x.unflatten(-2, (blocks, window))
            padded = F.pad(chunks, (0, 0, 0, 0, 1, 1))  # an empty block at each end
            return torch.cat([padded[..., 1 + o : 1 + o + blocks, :, :] for o in offsets], -2)

        keys, values = neighbours(k), neighbours(v)
        key_real = neighbours(real[:, None, :, None].float())[:, 0, :, :, 0] > 0  # (B, nb, nW)
        position = torch.arange(window, device=q.device)
        key_offset = torch.cat([position + o * window for o in offsets])  # within-neighbourhood
        offset = position[:, None] - key_offset[None, :]  # query minus key position
        band = (offset >= 0) & (offset < window) if self.causal else offset.abs() < window
        mask = band[None, None, None] & key_real[:, None, :, None, :]  # (B, 1, nb, W, nW)
        empty = ~mask.any(-1, keepdim=True)
        out = F.scaled_dot_product_attention(
            q.unflatten(-2, (blocks, window)),
            keys,
            values,
            attn_mask=mask | empty,
            dropout_p=dropout,
        )
        out = out.masked_fill(empty, 0.0).flatten(-3, -2)
        return out[..., :length, :]

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: AttentionState | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, AttentionState]:
        """A ring buffer of W slots: position t writes slot `t mod W`; the query sees the
        `min(t + 1, W)` filled slots. `length: (B,)` counts the positions seen."""
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        if state is None:
            state = {
                "k": k.new_zeros(*k.shape[:2], self.window, k.shape[-1]),
                "v": v.new_zeros(*v.shape[:2], self.window, v.shape[-1]),
                "length": torch.zeros(k.shape[0], dtype=torch.long, device=k.device),
            }
        keys, values, lengths = state["k"].clone(), state["v"].clone(), state["length"]
        seen = int(lengths[0]) if lengths.numel() else 0
        keys[:, :, seen % self.window] = k[:, :, 0]
        values[:, :, seen % self.window] = v[:, :, 0]
        filled = min(seen + 1, self.window)
        out = F.scaled_dot_product_attention(q, keys[:, :, :filled], values[:, :, :filled])
        return out, {"k": keys, "v": values, "length": lengths + 1}
