"""Softmax attention through `F.scaled_dot_product_attention` (flash kernels on GPU)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import Attention, AttentionSettings, AttentionState
from seq2seq.model.attention.rotary import Rotary


def _padding_and_causal_mask(
    key_padding_mask: Tensor | None,
    query_len: int,
    key_len: int,
    causal: bool,
    device: torch.device,
) -> Tensor | None:
    """Boolean `(B or 1, 1, Lq, Lk)` mask, True where a query may attend a key."""
    mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
    if causal:
        tril = torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril()
        mask = tril[None, None] if mask is None else mask & tril
    return mask


class SoftmaxAttention(Attention):
    """softmax(q k^T / sqrt(Dh)) v, causal or not; decoding keeps a KV cache.

    SDPA gets `is_causal` only when there is no padding mask; otherwise one explicit mask
    holds both. Query rows with no key to attend (an all-padding sequence) give zeros, not
    the NaN that a fully masked softmax row would. Rotary positions turn q and k before
    the product (the KV cache holds turned keys).
    """

    supports_causal = True
    supports_bidirectional = True
    supports_cross = True

    def __init__(self, *, causal: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.causal = causal
        self.dropout = dropout

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> SoftmaxAttention:
        return cls(causal=settings.causal, dropout=settings.dropout)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        dropout = self.dropout if self.training else 0.0
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        if key_padding_mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=self.causal)
        mask = _padding_and_causal_mask(
            key_padding_mask, q.shape[-2], k.shape[-2], self.causal, q.device
        )
        assert mask is not None
        empty = ~mask.any(-1, keepdim=True)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty, dropout_p=dropout)
        return out.masked_fill(empty, 0.0)

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: AttentionState | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, AttentionState]:
        """The KV cache is preallocated and doubled when full, so a step writes one
        position in place instead of copying the whole cache; `length: (B,)` holds the
        filled size (a tensor, so beam reordering selects it like everything else).
        A state is consumed by `step`: step it once, or `reorder` (which copies) first."""
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        if state is None:
            capacity = 64
            state = {
                "k": k.new_empty(*k.shape[:2], capacity, k.shape[-1]),
                "v": v.new_empty(*v.shape[:2], capacity, v.shape[-1]),
                "length": torch.zeros(k.shape[0], dtype=torch.long, device=k.device),
            }
        keys, values, lengths = state["k"], state["v"], state["length"]
        filled = int(lengths[0]) if lengths.numel() else 0
        if filled == keys.shape[2]:
            keys = torch.cat([keys, torch.empty_like(keys)], dim=2)
            values = torch.cat([values, torch.empty_like(values)], dim=2)
        keys[:, :, filled] = k[:, :, 0]
        values[:, :, filled] = v[:, :, 0]
        # One query at the newest position sees every cached key: no mask, no is_causal.
        out = F.scaled_dot_product_attention(
            q, keys[:, :, : filled + 1], values[:, :, : filled + 1]
        )
        return out, {"k": keys, "v": values, "length": lengths + 1}

    def weights(
        self, q: Tensor, k: Tensor, key_padding_mask: Tensor | None, rotary: Rotary | None = None
    ) -> Tensor:
        """Attention probabilities `(B, H, Lq, Lk)`, for inspecting attention maps."""
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        mask = _padding_and_causal_mask(
            key_padding_mask, q.shape[-2], k.shape[-2], self.causal, q.device
        )
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1).nan_to_num(0.0)
