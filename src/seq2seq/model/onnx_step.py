"""A decoder's incremental step as a function of tensors only, for ONNX export.

`PerformerDecoder.step` keeps its state in dicts, counts the position in a Python int and
grows the softmax KV cache in place; a graph can hold none of that. `DecoderStepGraph`
runs the same layers with the position as a tensor and every layer's state as explicit
inputs and outputs, in the order `state_specs` names them:

- softmax: the KV cache `k, v: (B, H, P, Dh)` with P the positions so far (0 at the start);
  the graph concatenates the new position, so P is a dynamic axis and no mask or maximum
  length is needed (a fixed-size buffer would need a scatter and a mask, and would cap
  the length);
- sliding_window: its ring buffer `k, v: (B, H, W, Dh)`, position t writing slot `t mod W`;
  slots not yet written are masked;
- causal_linear: `S: (B, H, m, Dh + 1)`; gated_linear, delta: `S: (B, H, Dh, Dh)`; their
  own `step` runs unchanged, given zeros for the empty prefix (which their `step(None)`
  equals);
- a short convolution (`model.linear.conv_size`): its last inputs `conv: (B, K - 1, 3D)`.

Cross-attention keys and values are projected from the memory once per source, by
`EncoderGraph` (the encoder's graph returns them beside the memory), and the step graph
takes them as inputs `cross.<layer>.k, cross.<layer>.v: (B, H, S, Dh)`, as
`PerformerDecoder.init_state` keeps them: a step does not project the whole memory again.
The step is for eval mode: dropout is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.model.attention import MultiHeadAttention
from seq2seq.model.attention.base import AttentionState
from seq2seq.model.attention.causal_linear import CausalLinearAttention
from seq2seq.model.attention.delta import DeltaAttention
from seq2seq.model.attention.gated_linear import GatedLinearAttention
from seq2seq.model.attention.multihead import CONV_CACHE
from seq2seq.model.attention.rotary import Rotary
from seq2seq.model.attention.sliding_window import SlidingWindowAttention
from seq2seq.model.attention.softmax import SoftmaxAttention
from seq2seq.model.embedding import (
    LearnedPositions,
    Positions,
    RotaryPositions,
    SinusoidalPositions,
)
from seq2seq.model.layer import PerformerLayer
from seq2seq.model.stack import PerformerDecoder

if TYPE_CHECKING:
    from seq2seq.model.encoder_decoder import EncoderDecoderTransformer

RECURRENT_KINDS = (CausalLinearAttention, GatedLinearAttention, DeltaAttention)
"""Kinds with a fixed-size state whose `step(state=None)` equals `step(zeros)`: their own
step runs in the graph."""
PAST = "past"
"""The dynamic axis of a softmax KV cache: the positions decoded so far."""
BATCH = "batch"
SOURCE = "source"
"""The dynamic axis of an encoder's output: the source positions."""
TENSOR_POSITIONS = (LearnedPositions, SinusoidalPositions, RotaryPositions)
"""Position kinds `_position_rows` reads at a tensor position."""


class NotExportable(ValueError):
    """A decoder layer whose decoding state has no tensor form here."""


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of the step graph: its input name, its shape (`batch` and `past`
    for the dynamic axes), and what a runtime feeds at the first position (zeros)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def zeros(self, batch: int) -> Tensor:
        """The initial state for `batch` rows; a `past` axis starts empty."""
        sizes = [batch if d == BATCH else 0 if d == PAST else int(d) for d in self.shape]
        return torch.zeros(sizes, dtype=getattr(torch, self.dtype))


@dataclass(frozen=True)
class PositionRotary(Rotary):
    """`Rotary` whose offset is a tensor `position: (1,)` int64, for a traced graph."""

    position: Tensor | None = None

    def angles(self, length: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if width % 2:
            raise ValueError(f"rotary positions turn pairs of columns; width {width} is odd")
        assert self.position is not None
        positions = self.position.to(torch.float64) + torch.arange(
            length, dtype=torch.float64, device=device
        )
        frequencies = self.base ** (
            -torch.arange(0, width, 2, dtype=torch.float64, device=device) / width
        )
        angles = positions[:, None] * frequencies[None, :]
        return angles.cos(), angles.sin()


def _position_rows(positions: Positions, x: Tensor, position: Tensor) -> Tensor:
    """`x: (B, 1, D)` plus the positions' row at `position: (1,)` int64."""
    if isinstance(positions, LearnedPositions):
        return x + positions.embedding.weight.index_select(0, position)
    if isinstance(positions, SinusoidalPositions):
        return x + positions.table.index_select(0, position)
    if isinstance(positions, RotaryPositions):
        return x
    raise NotExportable(f"positions {type(positions).__name__} have no tensor form")


def _kind_state_specs(
    attention: MultiHeadAttention, prefix: str, d_model: int
) -> list[tuple[str, StateSpec]]:
    """(key in the kind's state dict, spec) of one self-attention's state tensors."""
    kind = attention.attention
    heads = attention.num_heads
    head_dim = d_model // heads
    specs: list[tuple[str, StateSpec]] = []
    if isinstance(kind, SoftmaxAttention):
        shape: tuple[int | str, ...] = (BATCH, heads, PAST, head_dim)
        specs += [(key, StateSpec(f"{prefix}.{key}", shape)) for key in ("k", "v")]
    elif isinstance(kind, SlidingWindowAttention):
        shape = (BATCH, heads, kind.window, head_dim)
        specs += [(key, StateSpec(f"{prefix}.{key}", shape)) for key in ("k", "v")]
    elif isinstance(kind, RECURRENT_KINDS):
        # The shape of the state after one step from the empty prefix.
        probe = torch.zeros(1, heads, 1, head_dim)
        extras = {name: torch.zeros(1, heads, 1) for name in kind.extra_inputs}
        with torch.no_grad():
            _, state = kind.step(probe, probe, probe, None, None, extras)
        for key, tensor in state.items():
            specs.append((key, StateSpec(f"{prefix}.{key}", (BATCH, *tensor.shape[1:]))))
    else:
        raise NotExportable(
            f"no tensor form of the {type(kind).__name__} decoding state (model/onnx_step.py)"
        )
    if attention.conv is not None:
        channels = attention.conv.conv.in_channels
        shape = (BATCH, attention.conv.kernel - 1, channels)
        specs.append((CONV_CACHE, StateSpec(f"{prefix}.{CONV_CACHE}", shape)))
    return specs


def cross_specs(decoder: PerformerDecoder) -> list[StateSpec]:
    """The cross-attention keys and values of every decoder layer, in layer order:
    `cross.<layer>.k`, `cross.<layer>.v`, each `(B, H, S, Dh)`."""
    specs = []
    for index, layer in enumerate(decoder.layers):
        assert isinstance(layer, PerformerLayer) and layer.cross_attention is not None
        attention = layer.cross_attention
        heads = attention.num_heads
        shape = (BATCH, heads, SOURCE, attention.k_proj.out_features // heads)
        specs += [StateSpec(f"cross.{index}.{key}", shape) for key in ("k", "v")]
    return specs


class EncoderGraph(nn.Module):
    """`forward(src_tokens, src_mask) -> (memory, *cross)`: an encoder-decoder's `encode`,
    and every decoder layer's cross-attention keys and values of that memory (the order of
    `cross_specs`), which the step graph reads at every step."""

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_tokens: Tensor, src_mask: Tensor) -> tuple[Tensor, ...]:
        memory = self.model.encode(src_tokens, src_mask)
        cross: list[Tensor] = []
        for layer in self.model.decoder.layers:
            assert isinstance(layer, PerformerLayer) and layer.cross_attention is not None
            cross += layer.cross_attention.project_context(memory)
        return (memory, *cross)


class DecoderStepGraph(nn.Module):
    """`forward(tokens, position, [memory_mask, *cross,] *states) -> (logits, *states)`.

    Shapes: `tokens: (B,)` int64, the token at `position: (1,)` int64 (0 for bos);
    encoder-decoders only: `memory_mask: (B, S)` bool and the cross-attention keys and
    values as `cross_specs` lists them (`EncoderGraph`'s outputs); the states as
    `state_specs` lists them. Returns next-token logits `(B, V)` and the new states in
    the same order.
    """

    def __init__(self, decoder: PerformerDecoder, *, cross: bool) -> None:
        super().__init__()
        self.decoder = decoder
        self.cross = cross
        d_model = decoder.embedding.embedding_dim
        self.layer_specs: list[list[tuple[str, StateSpec]]] = []
        if not isinstance(decoder.positions, TENSOR_POSITIONS):
            raise NotExportable(f"positions {type(decoder.positions).__name__} have no tensor form")
        for index, layer in enumerate(decoder.layers):
            assert isinstance(layer, PerformerLayer)
            self.layer_specs.append(
                _kind_state_specs(layer.self_attention, f"state.{index}", d_model)
            )

    @property
    def state_specs(self) -> list[StateSpec]:
        return [spec for layer in self.layer_specs for _, spec in layer]

    def initial_states(self, batch: int) -> list[Tensor]:
        return [spec.zeros(batch) for spec in self.state_specs]

    def forward(self, tokens: Tensor, position: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        memory_mask = None
        cross: list[Tensor] = []
        states = list(rest)
        if self.cross:
            memory_mask, *states = states
            count = 2 * len(self.layer_specs)
            cross, states = states[:count], states[count:]
        decoder = self.decoder
        x = _position_rows(decoder.positions, decoder.embedding(tokens[:, None]), position)
        new_states: list[Tensor] = []
        offset = 0
        for index, (layer, specs) in enumerate(zip(decoder.layers, self.layer_specs, strict=True)):
            assert isinstance(layer, PerformerLayer)
            mine = {key: states[offset + i] for i, (key, _) in enumerate(specs)}
            offset += len(specs)
            keys_values = tuple(cross[2 * index : 2 * index + 2]) if cross else None
            x, state = self._layer_step(layer, x, mine, position, keys_values, memory_mask)
            new_states += [state[key] for key, _ in specs]
        logits = decoder.output(decoder.final_norm(x))[:, 0]
        return (logits, *new_states)

    def _layer_step(
        self,
        layer: PerformerLayer,
        x: Tensor,
        state: AttentionState,
        position: Tensor,
        cross: tuple[Tensor, ...] | None,
        memory_mask: Tensor | None,
    ) -> tuple[Tensor, AttentionState]:
        """`PerformerLayer.step` with tensor state and position: `x: (B, 1, D)`."""
        attended, state = _self_attention_step(
            layer.self_attention, layer.self_residual.pre(x), state, position
        )
        x = layer.self_residual.post(x, attended)
        if layer.cross_attention is not None:
            assert layer.cross_residual is not None and cross is not None
            keys, values = cross
            attended = layer.cross_attention.attend(
                layer.cross_residual.pre(x), keys, values, memory_mask
            )
            x = layer.cross_residual.post(x, attended)
        return layer.feedforward_residual(x, layer.feedforward), state


def _self_attention_step(
    attention: MultiHeadAttention, x: Tensor, state: AttentionState, position: Tensor
) -> tuple[Tensor, AttentionState]:
    """`MultiHeadAttention.step` with tensor state and position: `x: (B, 1, D)` ->
    `(B, 1, D)` and the new state (the same keys)."""
    state = dict(state)
    q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
    new: AttentionState = {}
    if attention.conv is not None:
        mixed, new[CONV_CACHE] = attention.conv.step(
            torch.cat([q, k, v], dim=-1), state.pop(CONV_CACHE)
        )
        q, k, v = mixed.chunk(3, dim=-1)
    rotary = None
    if attention.rotary is not None:
        rotary = PositionRotary(base=attention.rotary.base, position=position)
    q, k, v = attention._heads(q), attention._heads(k), attention._heads(v)
    kind = attention.attention
    if isinstance(kind, SoftmaxAttention):
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        new["k"] = torch.cat([state["k"], k], dim=2)
        new["v"] = torch.cat([state["v"], v], dim=2)
        out = F.scaled_dot_product_attention(q, new["k"], new["v"])
    elif isinstance(kind, SlidingWindowAttention):
        if rotary is not None:
            q, k = rotary.rotate(q), rotary.rotate(k)
        slots = torch.arange(kind.window, device=q.device)
        written = (slots == position % kind.window)[None, None, :, None]
        new["k"] = torch.where(written, k, state["k"])
        new["v"] = torch.where(written, v, state["v"])
        filled = (slots <= position)[None, None, None, :]
        out = F.scaled_dot_product_attention(q, new["k"], new["v"], attn_mask=filled)
    else:
        out, kind_state = kind.step(q, k, v, state, rotary, attention._extras(x))
        new.update(kind_state)
    return attention._merge(out, x), new
