"""`GatedAttention`: the base of the gated kinds (`gated_linear`, `delta`)."""

from __future__ import annotations

from seq2seq.model.attention.base import Attention, AttentionSettings
from seq2seq.model.attention.gates import ForgetGate, GateKind, HeadNorm

DEFAULT_CHUNK_SIZE = 32
"""The gated kinds' chunk length unless `model.linear.chunk_size` is set: with heads of
width 32 the within-chunk C x C work outweighs the state work at 64 (bench_long, CPU, 4,096
tokens: delta 1.22x softmax's training tokens/s at 32 against 1.04x at 64)."""


class GatedAttention(Attention):
    """The base of the gated kinds: a forget gate, a per-head output norm and a chunk
    size; causal only. A subclass sets `extra_inputs` from what its gate reads."""

    supports_causal = True
    gated = True
    causal = True

    def __init__(
        self, *, heads: int, head_dim: int, gate: GateKind = "data", chunk_size: int = 64
    ) -> None:
        super().__init__()
        assert chunk_size >= 1, chunk_size
        self.gate = ForgetGate(heads, gate)
        self.norm = HeadNorm(head_dim)
        self.chunk_size = chunk_size

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> GatedAttention:
        assert settings.causal
        return cls(
            heads=settings.heads,
            head_dim=settings.head_dim,
            gate=settings.gate,
            chunk_size=settings.chunk_size or DEFAULT_CHUNK_SIZE,
        )
