"""Multi-head wrapper: q/k/v/out projections around any attention kind, self or cross."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.model.attention.base import Attention, AttentionState
from seq2seq.model.attention.rotary import Rotary
from seq2seq.model.attention.softmax import SoftmaxAttention


class MultiHeadAttention(nn.Module):
    """Projects `(B, L, D)` activations to `(B, H, L, Dh)` heads, attends, projects back.

    Self-attention passes no `context`; cross-attention passes the encoder output.
    For decoding, `step` runs causal self-attention one position at a time, and
    `project_context` computes the cross-attention keys and values once per source.
    `rotary` (self-attention under rotary positions) goes to the attention kind with the
    rows' positions: 0.. for a whole sequence, the decoding position for a step.
    """

    def __init__(
        self, d_model: int, num_heads: int, attention: Attention, *, rotary: Rotary | None = None
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

    def _heads(self, x: Tensor) -> Tensor:
        """`(B, L, D) -> (B, H, L, Dh)`."""
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:
        """`(B, H, L, Dh) -> (B, L, D)`."""
        batch, heads, length, head_dim = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(batch, length, heads * head_dim))

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
        keys, values = self.project_context(x)
        queries = self._heads(self.q_proj(x))
        return self._merge(self.attention(queries, keys, values, key_padding_mask, self.rotary))

    def step(
        self, x: Tensor, state: AttentionState | None, *, position: int
    ) -> tuple[Tensor, AttentionState]:
        """Causal self-attention for one new position `x: (B, 1, D)` at `position` (counted
        from 0, the first token of the sequence)."""
        q = self._heads(self.q_proj(x))
        k, v = self.project_context(x)
        rotary = None if self.rotary is None else self.rotary.at(position)
        out, state = self.attention.step(q, k, v, state, rotary)
        return self._merge(out), state

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
        return f"heads={self.num_heads}, rotary={self.rotary is not None}"
