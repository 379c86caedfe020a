"""Gated linear attention (`gated_linear`): linear attention with a forget gate, causal.

    S_t = a_t S_{t-1} + k_t v_t^T,    o_t = norm(S_t^T q_t)

with `a_t` from `model.linear.gate` (`gates.py`: Mamba-2's data-dependent scalar per head
by default, RetNet's fixed per-head decay, or none), the queries scaled by `Dh^-1/2` and
each head's output RMS-normed (`HeadNorm`) instead of divided by `phi(q) . z`. The
whole-sequence form is `gated_linear_ops.gated_linear_attention` (chunked, gates as
log-space sums, float32); decoding is its O(1) recurrence. Under rotary positions q and k
are turned before the products, as softmax turns them.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from seq2seq.model.attention.base import AttentionState
from seq2seq.model.attention.gated import GatedAttention
from seq2seq.model.attention.gated_linear_ops import gated_linear_attention, gated_linear_step
from seq2seq.model.attention.gates import GateKind, masked_inputs
from seq2seq.model.attention.rotary import Rotary


class GatedLinearAttention(GatedAttention):
    def __init__(
        self, *, heads: int, head_dim: int, gate: GateKind = "data", chunk_size: int = 64
    ) -> None:
        super().__init__(heads=heads, head_dim=head_dim, gate=gate, chunk_size=chunk_size)
        self.scale = head_dim**-0.5
        self.extra_inputs = ("gate",) if self.gate.reads_input else ()

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """`extras["gate"]: (B, H, L)`, the gate's projection (the `data` gate)."""
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        log_decay = self.gate((extras or {}).get("gate"), q)
        k, v, log_decay = masked_inputs(key_padding_mask, k, v, log_decay)
        out = gated_linear_attention(q * self.scale, k, v, log_decay, chunk_size=self.chunk_size)
        return self.norm(out)

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: AttentionState | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, AttentionState]:
        """One position, `q, k, v: (B, H, 1, Dh)`: `S <- a S + k v^T` in float32."""
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        log_decay = self.gate((extras or {}).get("gate"), q)
        out, s = gated_linear_step(
            q * self.scale, k, v, log_decay, None if state is None else state["S"]
        )
        return self.norm(out), {"S": s}
