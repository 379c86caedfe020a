"""Multi-head wrapper: q/k/v/out projections around any attention kind, self or cross.

Around a gated kind it is also the block those models use: the per-head inputs the kind
declares (`extra_inputs`: a forget gate, a write strength) projected from the layer
input, an optional short causal convolution over q, k and v (`conv_size`), and an
optional output gate `out = attn(x) * silu(W_g x)` before the output projection
(`output_gate`; the kind has already RMS-normed each head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.model.attention.base import Attention, AttentionState
from seq2seq.model.attention.rotary import Rotary
from seq2seq.model.attention.short_conv import ShortConvolution
from seq2seq.model.attention.softmax import SoftmaxAttention

CONV_CACHE = "conv"
"""The decoding state's entry for the short convolution's last inputs."""


class MultiHeadAttention(nn.Module):
    """Projects `(B, L, D)` activations to `(B, H, L, Dh)` heads, attends, projects back.

    Self-attention passes no `context`; cross-attention passes the encoder output.
    For decoding, `step` runs causal self-attention one position at a time, and
    `project_context` computes the cross-attention keys and values once per source.
    `rotary` (self-attention under rotary positions) goes to the attention kind with the
    rows' positions: 0.. for a whole sequence, the decoding position for a step.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        attention: Attention,
        *,
        rotary: Rotary | None = None,
        conv_size: int = 0,
        output_gate: bool = False,
    ) -> None:
        super().__init__()
        assert d_model % num_heads == 0, (d_model, num_heads)
        self.num_heads = num_heads
        self.attention = attention
        self.rotary = rotary
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        extra = len(attention.extra_inputs)
        self.extra_proj = nn.Linear(d_model, num_heads * extra) if extra else None
        self.conv = ShortConvolution(3 * d_model, conv_size) if conv_size else None
        self.gate_proj = nn.Linear(d_model, d_model) if output_gate else None

    def _heads(self, x: Tensor) -> Tensor:
        """`(B, L, D) -> (B, H, L, Dh)`."""
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def _merge(self, x: Tensor, gate_input: Tensor | None = None) -> Tensor:
        """`(B, H, L, Dh) -> (B, L, D)`; `gate_input: (B, L, D)`, the layer input that the
        output gate reads (self-attention)."""
        batch, heads, length, head_dim = x.shape
        merged = x.transpose(1, 2).reshape(batch, length, heads * head_dim)
        if self.gate_proj is not None and gate_input is not None:
            merged = merged * F.silu(self.gate_proj(gate_input))
        return self.out_proj(merged)

    def _extras(self, x: Tensor) -> dict[str, Tensor]:
        """The kind's per-head inputs `(B, H, L)` projected from `x: (B, L, D)`."""
        if self.extra_proj is None:
            return {}
        raw = self.extra_proj(x).unflatten(-1, (len(self.attention.extra_inputs), -1))
        return {
            name: raw[:, :, i].transpose(1, 2) for i, name in enumerate(self.attention.extra_inputs)
        }

    def _self_projections(
        self, x: Tensor, key_padding_mask: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v `(B, H, L, Dh)` of `x: (B, L, D)`, through the short convolution when
        there is one."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv is not None:
            q, k, v = self.conv(torch.cat([q, k, v], dim=-1), key_padding_mask).chunk(3, dim=-1)
        return self._heads(q), self._heads(k), self._heads(v)

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values `(B, H, Lk, Dh)` of `context: (B, Lk, D)`."""
        return self._heads(self.k_proj(context)), self._heads(self.v_proj(context))

    def attend(
        self, x: Tensor, keys: Tensor, values: Tensor, key_padding_mask: Tensor | None
    ) -> Tensor:
        """`x: (B, Lq, D)` attends precomputed `keys, values: (B, H, Lk, Dh)`."""
        out = self.attention(self._heads(self.q_proj(x)), keys, values, key_padding_mask)
        return self._merge(out)

    def forward(
        self, x: Tensor, context: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """`x: (B, Lq, D)`, `context: (B, Lk, D)` or None for self-attention -> `(B, Lq, D)`.

        `key_padding_mask: (B, Lk)` marks the real keys (of `context`, or of `x`).
        """
        if context is not None:
            assert self.rotary is None, "rotary positions turn self-attention only"
            keys, values = self.project_context(context)
            return self.attend(x, keys, values, key_padding_mask)
        queries, keys, values = self._self_projections(x, key_padding_mask)
        out = self.attention(queries, keys, values, key_padding_mask, self.rotary, self._extras(x))
        return self._merge(out, x)

    def step(
        self, x: Tensor, state: AttentionState | None, *, position: int
    ) -> tuple[Tensor, AttentionState]:
        """Causal self-attention for one new position `x: (B, 1, D)` at `position` (counted
        from 0, the first token of the sequence)."""
        state = dict(state or {})
        conv_cache = state.pop(CONV_CACHE, None)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv is not None:
            mixed, conv_cache = self.conv.step(torch.cat([q, k, v], dim=-1), conv_cache)
            q, k, v = mixed.chunk(3, dim=-1)
        rotary = None if self.rotary is None else self.rotary.at(position)
        out, kind_state = self.attention.step(
            self._heads(q), self._heads(k), self._heads(v), state or None, rotary, self._extras(x)
        )
        if conv_cache is not None:
            kind_state = {**kind_state, CONV_CACHE: conv_cache}
        return self._merge(out, x), kind_state

    def attention_weights(
        self, x: Tensor, context: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """Softmax attention maps `(B, H, Lq, Lk)`; linear kinds have no such matrix."""
        if not isinstance(self.attention, SoftmaxAttention):
            raise TypeError(
                f"attention weights exist for softmax attention only, not {type(self.attention).__name__}"
            )
        keys, _ = self.project_context(x if context is None else context)
        rotary = self.rotary if context is None else None
        return self.attention.weights(self._heads(self.q_proj(x)), keys, key_padding_mask, rotary)

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, rotary={self.rotary is not None}, "
            f"output_gate={self.gate_proj is not None}"
        )
