"""Causal linear attention: sums over `j <= i`, computed chunk by chunk.

The sequence is padded to a multiple of the chunk size C and cut into chunks. Inside a
chunk, a masked C x C product of features; across chunks, each chunk's state
`sum phi(k) v^T` (m x Dh) and normalizer `sum phi(k)` (m), with an exclusive cumulative sum
over chunks giving every chunk the state of all chunks before it. That is the parallel
form: no Python loop over chunks (so torch.compile does not unroll) and no per-position
m x Dh state. The backends (`backends.py`) run it: PyTorch, or fused Triton kernels.
Decoding uses the recurrence `S += phi(k) v^T, z += phi(k)`, constant time and memory per
token, in PyTorch. Everything runs in float32, whatever the autocast dtype. Under rotary
positions the numerator's features are rotated and the normalizer's are not (`rotary.py`),
in PyTorch; the state then holds `sum R phi(k) v^T` beside the plain `sum phi(k)`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from seq2seq.model.attention import torch_backend
from seq2seq.model.attention.backends import check_backend, check_rotary_backend, runs_triton
from seq2seq.model.attention.base import (
    Attention,
    AttentionSettings,
    AttentionState,
    float32_region,
)
from seq2seq.model.attention.feature_maps import FeatureMap
from seq2seq.model.attention.rotary import Rotary
from seq2seq.model.attention.torch_backend import divided, masked_features, normalized, with_ones

DEFAULT_CHUNK_SIZE = 64
"""The torch backend's chunk length unless `model.linear.chunk_size` is set."""


class CausalLinearAttention(Attention):
    supports_causal = True
    uses_feature_map = True
    causal = True

    def __init__(
        self, feature_map: FeatureMap, *, chunk_size: int = 64, backend: str = "auto"
    ) -> None:
        super().__init__()
        assert chunk_size >= 1, chunk_size
        check_backend(backend)
        self.feature_map = feature_map
        self.chunk_size = chunk_size
        self.backend = backend

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> CausalLinearAttention:
        assert settings.feature_map is not None and settings.causal
        chunk_size = settings.chunk_size or DEFAULT_CHUNK_SIZE
        return cls(settings.feature_map(), chunk_size=chunk_size, backend=settings.backend)

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
            check_rotary_backend(self.backend)
            return torch_backend.rotary_causal_linear_attention(
                q, k, v, key_padding_mask, self.feature_map, rotary, chunk_size=self.chunk_size
            )
        if runs_triton(self.backend, q.device):
            from seq2seq.model.attention import triton_backend

            return triton_backend.causal_linear_attention(
                q, k, v, key_padding_mask, self.feature_map
            )
        return torch_backend.causal_linear_attention(
            q, k, v, key_padding_mask, self.feature_map, chunk_size=self.chunk_size
        )

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: AttentionState | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, AttentionState]:
        """The recurrence `S += phi(k) [v, 1]^T`: S holds sum phi(k) v^T and, in its last
        column, the normalizer sum phi(k); constant time and memory per token. Under rotary
        positions the first columns sum the rotated `R phi(k) v^T` instead."""
        with float32_region(q.device):
            q_features, k_features = masked_features(self.feature_map, q, k, None, all_keys=False)
            if rotary is None:
                update = k_features.transpose(-1, -2) @ with_ones(v)  # (B, H, m, Dh + 1)
                s = update if state is None else state["S"] + update
                return normalized(q_features @ s).to(v.dtype), {"S": s}
            update = torch.cat(
                [
                    rotary.rotate(k_features).transpose(-1, -2) @ v.float(),
                    k_features.transpose(-1, -2),
                ],
                dim=-1,
            )
            s = update if state is None else state["S"] + update
            numerator = rotary.rotate(q_features) @ s[..., :-1]
            out = divided(numerator, q_features @ s[..., -1:])
            return out.to(v.dtype), {"S": s}
