"""PerformerEncoder and PerformerDecoder: embeddings, a stack of PerformerLayers, a final norm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from seq2seq.model.dropout import Dropout
from seq2seq.model.embedding import Positions, TokenEmbedding
from seq2seq.model.layer import LayerState, PerformerLayer


class LayerStack(nn.Module):
    """What both stacks share: embeddings plus positions, the layers, a final norm."""

    def __init__(
        self,
        *,
        embedding: TokenEmbedding,
        positions: Positions,
        layers: Sequence[PerformerLayer],
        final_norm: nn.Module,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.positions = positions
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.dropout = Dropout(dropout)
        self.checkpoint_layers = False
        """Recompute each layer in the backward pass instead of keeping its activations
        (`PerformerModel.checkpoint_activations`)."""

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """`tokens: (B, L)` at positions offset.. -> `(B, L, D)`."""
        return self.dropout(self.positions(self.embedding(tokens), offset))

    def run_layer(self, layer: nn.Module, *inputs: Tensor | None) -> Tensor:
        """`layer(*inputs)`; when training with `checkpoint_layers`, under a non-reentrant
        checkpoint: only the inputs are kept for backward, where the layer runs again with
        the RNG state of its first run (the same dropout masks)."""
        if self.checkpoint_layers and self.training and torch.is_grad_enabled():
            out: Tensor = checkpoint(layer, *inputs, use_reentrant=False)
            return out
        result: Tensor = layer(*inputs)
        return result


class PerformerEncoder(LayerStack):
    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """`tokens: (B, S)`, `mask: (B, S)` True where real -> `(B, S, D)`."""
        x = self.embed(tokens)
        for layer in self.layers:
            x = self.run_layer(layer, x, mask)
        return self.final_norm(x)


def _reorder(tensor: Tensor | None, index: Tensor) -> Tensor | None:
    return None if tensor is None else tensor.index_select(0, index)


@dataclass
class DecoderState:
    """Everything a decoder needs between steps; `reorder` follows beam search's choices."""

    layers: list[LayerState]
    context_mask: Tensor | None
    position: int = 0

    def reorder(self, index: Tensor) -> DecoderState:
        """Select batch rows `index: (B',)` of every cached tensor (beam reordering)."""
        layers = [
            LayerState(
                self_attention=None
                if layer.self_attention is None
                else {name: t.index_select(0, index) for name, t in layer.self_attention.items()},
                context_keys=_reorder(layer.context_keys, index),
                context_values=_reorder(layer.context_values, index),
            )
            for layer in self.layers
        ]
        return replace(self, layers=layers, context_mask=_reorder(self.context_mask, index))


class PerformerDecoder(LayerStack):
    """Causal decoder stack ending in the output projection to vocabulary logits.

    With cross-attention layers it is a seq2seq decoder; without, a language model.
    """

    def __init__(
        self,
        *,
        embedding: TokenEmbedding,
        positions: Positions,
        layers: Sequence[PerformerLayer],
        final_norm: nn.Module,
        output: nn.Linear,
        dropout: float,
    ) -> None:
        super().__init__(
            embedding=embedding,
            positions=positions,
            layers=layers,
            final_norm=final_norm,
            dropout=dropout,
        )
        self.output = output

    def forward(
        self,
        tokens: Tensor,
        mask: Tensor | None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """`tokens: (B, T)`, `mask: (B, T)`, `context: (B, S, D)`, `context_mask: (B, S)`
        -> logits `(B, T, V)`."""
        x = self.embed(tokens)
        for layer in self.layers:
            x = self.run_layer(layer, x, mask, context, context_mask)
        return self.output(self.final_norm(x))

    def init_state(
        self, context: Tensor | None = None, context_mask: Tensor | None = None
    ) -> DecoderState:
        """Start decoding; computes each layer's cross-attention keys/values once."""
        layers: list[PerformerLayer] = list(self.layers)  # type: ignore[arg-type]
        return DecoderState([layer.init_state(context) for layer in layers], context_mask)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Feed `tokens: (B,)` at position `state.position` -> next-token logits `(B, V)`."""
        x = self.embed(tokens[:, None], offset=state.position)
        layers = []
        for layer, layer_state in zip(self.layers, state.layers, strict=True):
            assert isinstance(layer, PerformerLayer)
            x, layer_state = layer.step(x, layer_state, state.context_mask, position=state.position)
            layers.append(layer_state)
        logits = self.output(self.final_norm(x))[:, 0]
        return logits, DecoderState(layers, state.context_mask, state.position + 1)
