"""Attention kinds behind one interface: softmax, linear and causal_linear."""

from seq2seq.model.attention.base import Attention, AttentionSettings, AttentionState
from seq2seq.model.attention.causal_linear import CausalLinearAttention
from seq2seq.model.attention.feature_maps import (
    FEATURE_MAPS,
    EluFeatureMap,
    FavorFeatureMap,
    FeatureMap,
    ReluFeatureMap,
)
from seq2seq.model.attention.linear import LinearAttention
from seq2seq.model.attention.multihead import MultiHeadAttention
from seq2seq.model.attention.registry import ATTENTIONS, build_attention
from seq2seq.model.attention.softmax import SoftmaxAttention

__all__ = [
    "ATTENTIONS",
    "FEATURE_MAPS",
    "Attention",
    "AttentionSettings",
    "AttentionState",
    "CausalLinearAttention",
    "EluFeatureMap",
    "FavorFeatureMap",
    "FeatureMap",
    "LinearAttention",
    "MultiHeadAttention",
    "ReluFeatureMap",
    "SoftmaxAttention",
    "build_attention",
]
