"""The gated delta rule (`delta`; Yang et al. 2024, "Gated Delta Networks"), causal.

    S_t = a_t (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T,    o_t = norm(S_t^T q_t)

Each write first removes what the state held for `k_t` (the delta rule: `S` learns the
value of a key instead of piling values up), with the write strength
`b_t = sigmoid(w . x_t)` projected from the layer input per head and position. q and k
are L2-normalised per head (so `I - b k k^T` never grows the state), the forget gate
`a_t` is `model.linear.gate` (`data` by default: Gated DeltaNet; `none`: plain DeltaNet;
`gates.py`), and each head's output is RMS-normed. The whole-sequence form is
`delta_rule_ops.delta_rule_attention` (the chunked WY/UT form: one triangular solve per
chunk, a scan over chunks, float32); decoding is the O(1) recurrence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import AttentionState
from seq2seq.model.attention.delta_rule_ops import delta_rule_attention, delta_rule_step
from seq2seq.model.attention.gated import GatedAttention
from seq2seq.model.attention.gates import GateKind, masked_inputs
from seq2seq.model.attention.rotary import Rotary


class DeltaAttention(GatedAttention):
    def __init__(
        self, *, heads: int, head_dim: int, gate: GateKind = "data", chunk_size: int = 64
    ) -> None:
        super().__init__(heads=heads, head_dim=head_dim, gate=gate, chunk_size=chunk_size)
        self.extra_inputs = ("beta", "gate") if self.gate.reads_input else ("beta",)

    def _inputs(
        self, q: Tensor, k: Tensor, rotary: Rotary | None, extras: Mapping[str, Tensor] | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Normalised q and k, write strengths and log decays (None without a gate)."""
        if rotary is not None:  # a rotation keeps the norm
            q, k = rotary.rotate(q), rotary.rotate(k)
        extras = extras or {}
        beta = extras["beta"].float().sigmoid()
        log_decay = None if self.gate.kind == "none" else self.gate(extras.get("gate"), q)
        return l2_normalize(q), l2_normalize(k), beta, log_decay

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """`extras["beta"]`, `extras["gate"]`: `(B, H, L)` projections of the layer input."""
        q, k, beta, log_decay = self._inputs(q, k, rotary, extras)
        if log_decay is None:
            k, v, beta = masked_inputs(key_padding_mask, k, v, beta)
        else:
            k, v, beta, log_decay = masked_inputs(key_padding_mask, k, v, beta, log_decay)
        out = delta_rule_attention(q, k, v, beta, log_decay, chunk_size=self.chunk_size)
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
        q, k, beta, log_decay = self._inputs(q, k, rotary, extras)
        out, s = delta_rule_step(q, k, v, beta, log_decay, None if state is None else state["S"])
        return self.norm(out), {"S": s}


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """`F.normalize(x, dim=-1)`, the same values, with a backward of two passes over x
    instead of autograd's five (norm, clamp, expand, division, each differentiated).

    Shapes: `x: (..., D)`; returns the same shape and dtype.
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Decoding: no backward to save for, and F.normalize skips the Function's overhead.
        return F.normalize(x, dim=-1, eps=eps)
    out: Tensor = _L2Normalize.apply(x, eps)
    return out


class _L2Normalize(torch.autograd.Function):
    """`x / max(|x|, eps)` over the last dimension; saves x (kept alive by its producer
    anyway) and the `(..., 1)` denominators, not the normalised copy."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, eps: float) -> Tensor:
        norm = x.norm(2, -1, keepdim=True)
        denom = norm.clamp_min(eps)
        ctx.save_for_backward(x, denom, norm >= eps)
        return x / denom.expand_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, denom, unclamped = ctx.saved_tensors
        # d(x / |x|) = (dy - x (x . dy) / |x|^2) / |x|; where the eps floor holds, the
        # denominator is a constant and only dy / eps remains.
        along = torch.linalg.vecdot(x, grad).unsqueeze(-1) / (denom * denom) * unclamped
        return torch.addcmul(grad, x, along, value=-1.0) / denom, None
