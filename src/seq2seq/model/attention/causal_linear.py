"""Causal linear attention: sums over `j <= i`, computed chunk by chunk.

The sequence is padded to a multiple of the chunk size C and cut into chunks. Inside a
chunk, a masked C x C product of features; across chunks, each chunk's state
`sum phi(k) v^T` (m x Dh) and normalizer `sum phi(k)` (m), with an exclusive cumulative sum
over chunks giving every chunk the state of all chunks before it. That is the parallel
form: no Python loop over chunks (so torch.compile does not unroll) and no per-position
m x Dh state. Decoding uses the recurrence `S += phi(k) v^T, z += phi(k)`, constant time
and memory per token. Everything runs in float32, whatever the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import (
    Attention,
    AttentionSettings,
    AttentionState,
    float32_region,
)
from seq2seq.model.attention.feature_maps import FeatureMap
from seq2seq.model.attention.linear import masked_features, normalized, with_ones


def _exclusive_cumsum(x: Tensor, dim: int) -> Tensor:
    """`out[i] = sum_{j < i} x[j]` along `dim`, shifting rather than subtracting (exact)."""
    total = x.cumsum(dim)
    return torch.cat(
        [torch.zeros_like(x.narrow(dim, 0, 1)), total.narrow(dim, 0, x.shape[dim] - 1)], dim
    )


class CausalLinearAttention(Attention):
    supports_causal = True
    uses_feature_map = True
    causal = True

    def __init__(self, feature_map: FeatureMap, *, chunk_size: int = 64) -> None:
        super().__init__()
        assert chunk_size >= 1, chunk_size
        self.feature_map = feature_map
        self.chunk_size = chunk_size

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> CausalLinearAttention:
        assert settings.feature_map is not None and settings.causal
        return cls(settings.feature_map(), chunk_size=settings.chunk_size)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        batch, heads, length, head_dim = v.shape
        with float32_region(q.device):
            q_features, k_features = masked_features(
                self.feature_map, q, k, key_padding_mask, all_keys=False
            )
            values = with_ones(v)  # the last column accumulates the normalizer
            chunk = min(self.chunk_size, length)
            pad = -length % chunk
            if pad:
                q_features = F.pad(q_features, (0, 0, 0, pad))
                k_features = F.pad(k_features, (0, 0, 0, pad))
                values = F.pad(values, (0, 0, 0, pad))
            chunks = (length + pad) // chunk
            m = q_features.shape[-1]
            qc = q_features.view(batch, heads, chunks, chunk, m)
            kc = k_features.view(batch, heads, chunks, chunk, m)
            vc = values.view(batch, heads, chunks, chunk, head_dim + 1)

            # The chunk itself: a causally masked C x C product.
            causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
            scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)
            out = scores @ vc
            if chunks > 1:
                # Earlier chunks act through their summed states (B, H, n, m, Dh + 1).
                out = out + qc @ _exclusive_cumsum(kc.transpose(-1, -2) @ vc, dim=2)
            out = normalized(out)
            return out.reshape(batch, heads, chunks * chunk, head_dim)[:, :, :length].to(v.dtype)

    def step(
        self, q: Tensor, k: Tensor, v: Tensor, state: AttentionState | None
    ) -> tuple[Tensor, AttentionState]:
        """The recurrence `S += phi(k) [v, 1]^T`: S holds sum phi(k) v^T and, in its last
        column, the normalizer sum phi(k); constant time and memory per token."""
        with float32_region(q.device):
            q_features, k_features = masked_features(self.feature_map, q, k, None, all_keys=False)
            update = k_features.transpose(-1, -2) @ with_ones(v)  # (B, H, m, Dh + 1)
            s = update if state is None else state["S"] + update
            return normalized(q_features @ s).to(v.dtype), {"S": s}
