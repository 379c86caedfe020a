"""Non-causal linear attention (Katharopoulos et al., 2020; Performer's FAVOR+).

`out_i = phi(q_i) (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j))`: O(L m Dh) time,
no L x L matrix. Padded keys get zero features, so they add nothing to either sum.
"""

from __future__ import annotations

from torch import Tensor

from seq2seq.model.attention.base import EPSILON, Attention, float32_region
from seq2seq.model.attention.feature_maps import FeatureMap


def masked_features(
    feature_map: FeatureMap, q: Tensor, k: Tensor, key_padding_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """float32 `phi(q): (B, H, Lq, m)` and `phi(k): (B, H, Lk, m)`, padded keys zeroed."""
    q_features = feature_map(q, is_query=True)
    k_features = feature_map(k, is_query=False)
    if key_padding_mask is not None:
        k_features = k_features * key_padding_mask[:, None, :, None]
    return q_features, k_features


class LinearAttention(Attention):
    supports_bidirectional = True
    uses_feature_map = True

    def __init__(self, feature_map: FeatureMap) -> None:
        super().__init__()
        self.feature_map = feature_map

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        with float32_region(q.device):
            q_features, k_features = masked_features(self.feature_map, q, k, key_padding_mask)
            state = k_features.transpose(-1, -2) @ v.float()  # (B, H, m, Dh)
            normalizer = k_features.sum(dim=2)  # (B, H, m)
            numerator = q_features @ state
            denominator = (q_features @ normalizer.unsqueeze(-1)) + EPSILON
            return (numerator / denominator).to(v.dtype)
