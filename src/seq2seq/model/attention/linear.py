"""Non-causal linear attention (Katharopoulos et al., 2020; Performer's FAVOR+).

`out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j))`: O(L m Dh) time,
no L x L matrix. Padded keys get zero features, so they add nothing to either sum. The
arithmetic lives in the backends (`backends.py`): PyTorch, or fused Triton kernels. Under
rotary positions the numerator's features are rotated (`rotary.py`), in PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from seq2seq.model.attention import torch_backend
from seq2seq.model.attention.backends import check_backend, check_rotary_backend, runs_triton
from seq2seq.model.attention.base import Attention, AttentionSettings
from seq2seq.model.attention.feature_maps import FeatureMap
from seq2seq.model.attention.rotary import Rotary


class LinearAttention(Attention):
    supports_bidirectional = True
    supports_cross = True
    uses_feature_map = True

    def __init__(self, feature_map: FeatureMap, *, backend: str = "auto") -> None:
        super().__init__()
        check_backend(backend)
        self.feature_map = feature_map
        self.backend = backend

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> LinearAttention:
        assert settings.feature_map is not None and not settings.causal
        return cls(settings.feature_map(), backend=settings.backend)

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
            return torch_backend.rotary_linear_attention(
                q, k, v, key_padding_mask, self.feature_map, rotary
            )
        if runs_triton(self.backend, q.device):
            from seq2seq.model.attention import triton_backend

            return triton_backend.linear_attention(q, k, v, key_padding_mask, self.feature_map)
        return torch_backend.linear_attention(q, k, v, key_padding_mask, self.feature_map)
