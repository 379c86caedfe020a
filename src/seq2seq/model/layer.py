"""PerformerLayer: one class for encoder layers and decoder layers with cross-attention."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from seq2seq.model.attention import AttentionState, MultiHeadAttention
from seq2seq.model.norms import ResidualFactory


@dataclass
class LayerState:
    """Decoding state of one decoder layer.

    `self_attention`: the KV cache (softmax) or (S, z) state (causal_linear), None before
    the first step; `context_keys`/`context_values`: the encoder output's cross-attention
    keys and values `(B, H, S, Dh)`, computed once per source.
    """

    self_attention: AttentionState | None
    context_keys: Tensor | None = None
    context_values: Tensor | None = None


class PerformerLayer(nn.Module):
    """Self-attention, then cross-attention when given, then the feed-forward; each
    sublayer wrapped by the same residual scheme (one code path for all three)."""

    def __init__(
        self,
        *,
        self_attention: MultiHeadAttention,
        cross_attention: MultiHeadAttention | None,
        feedforward: nn.Module,
        residual: ResidualFactory,
    ) -> None:
        super().__init__()
        self.self_attention = self_attention
        self.self_residual = residual()
        self.cross_attention = cross_attention
        self.cross_residual = residual() if cross_attention is not None else None
        self.feedforward = feedforward
        self.feedforward_residual = residual()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """`x: (B, L, D)`, `mask: (B, L)`, `context: (B, S, D)`, `context_mask: (B, S)`."""
        x = self.self_residual(x, lambda h: self.self_attention(h, key_padding_mask=mask))
        if self.cross_attention is not None:
            assert self.cross_residual is not None
            if context is None:
                raise ValueError("a decoder layer with cross-attention needs the encoder output")
            cross = self.cross_attention
            x = self.cross_residual(x, lambda h: cross(h, context, context_mask))
        return self.feedforward_residual(x, self.feedforward)

    def init_state(self, context: Tensor | None) -> LayerState:
        if self.cross_attention is None or context is None:
            return LayerState(self_attention=None)
        keys, values = self.cross_attention.project_context(context)
        return LayerState(self_attention=None, context_keys=keys, context_values=values)

    def step(
        self, x: Tensor, state: LayerState, context_mask: Tensor | None, *, position: int
    ) -> tuple[Tensor, LayerState]:
        """One decoding position: `x: (B, 1, D)` at `position` -> `(B, 1, D)` and the
        updated state."""
        attended, self_state = self.self_attention.step(
            self.self_residual.pre(x), state.self_attention, position=position
        )
        x = self.self_residual.post(x, attended)
        if self.cross_attention is not None:
            assert self.cross_residual is not None
            assert state.context_keys is not None and state.context_values is not None
            attended = self.cross_attention.attend(
                self.cross_residual.pre(x), state.context_keys, state.context_values, context_mask
            )
            x = self.cross_residual.post(x, attended)
        x = self.feedforward_residual(x, self.feedforward)
        return x, LayerState(self_state, state.context_keys, state.context_values)
