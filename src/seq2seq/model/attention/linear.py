"""Non-causal linear attention (Katharopoulos et al., 2020; Performer's FAVOR+).

`out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j))`: O(L m Dh) time,
no L x L matrix. Padded keys get zero features, so they add nothing to either sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import (
    SMALLEST_DENOMINATOR,
    Attention,
    AttentionSettings,
    float32_region,
)
from seq2seq.model.attention.feature_maps import FeatureMap


def masked_features(
    feature_map: FeatureMap,
    q: Tensor,
    k: Tensor,
    key_padding_mask: Tensor | None,
    *,
    all_keys: bool,
) -> tuple[Tensor, Tensor]:
    """float32 `phi(q): (B, H, Lq, m)` and `phi(k): (B, H, Lk, m)`, padded keys zeroed;
    `all_keys` (non-causal) lets the keys share a stabilizing scale."""
    q_features = feature_map(q, is_query=True)
    k_features = feature_map(k, is_query=False, mask=key_padding_mask, all_keys=all_keys)
    return q_features, k_features


def with_ones(v: Tensor) -> Tensor:
    """`(B, H, L, Dh) -> (B, H, L, Dh + 1)` float32 with a last column of ones.

    Products with it carry the normalizer `sum phi(k)` as their last column, so one
    matmul gives numerator and denominator together."""
    return F.pad(v.float(), (0, 1), value=1.0)


def normalized(numerator_and_denominator: Tensor) -> Tensor:
    """Split the last column off as the denominator and divide."""
    numerator, denominator = numerator_and_denominator.split(
        [numerator_and_denominator.shape[-1] - 1, 1], dim=-1
    )
    # A row with no weight at all (every feature 0) gives 0 and passes no gradient.
    return torch.where(
        denominator > 0, numerator / denominator.clamp_min(SMALLEST_DENOMINATOR), 0.0
    )


class LinearAttention(Attention):
    supports_bidirectional = True
    uses_feature_map = True

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.feature_map = feature_map

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> LinearAttention:
        assert settings.feature_map is not None and not settings.causal
        return cls(settings.feature_map())

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        with float32_region(q.device):
            q_features, k_features = masked_features(
                self.feature_map, q, k, key_padding_mask, all_keys=True
            )
            state = k_features.transpose(-1, -2) @ with_ones(v)  # (B, H, m, Dh + 1)
            return normalized(q_features @ state).to(v.dtype)
