"""The interface every attention kind shares.

`forward(q, k, v, key_padding_mask, rotary, extras)` attends per-head tensors; causal kinds
also have `step(q, k, v, state, rotary, extras)`, which attends one new position given the
state of the prefix. `rotary` (self-attention under `model.position=rotary`, else None)
gives the rows' positions; each kind applies it in its own way (`rotary.py`). `extras`
holds the per-head, per-position inputs a kind declares in `extra_inputs` (a forget gate,
a write strength), which the multi-head module projects from the layer input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.model.attention.feature_maps import FeatureMap
from seq2seq.model.attention.gates import GateKind
from seq2seq.model.attention.rotary import Rotary

AttentionState = dict[str, Tensor]
"""Per-layer decoding state; every tensor has the batch on dim 0 so beams can reorder it."""

SMALLEST_DENOMINATOR = 1e-30
"""Linear attentions' denominators are clamped to at least this; a row whose denominator
is exactly 0 (relu features, or FAVOR+ features that all underflowed) gives 0 and no
gradient. Features are non-negative, so numerator / denominator is a weighted average of
the values at any scale. An additive epsilon would compete with the tiny real denominators
of large-norm FAVOR+ keys (1e-12 shrinks causal outputs of keys of std 4 at Dh=64 to about
0.35 of their values' average); a clamp much lower (float32's smallest normal, 1e-38) lets
1 / denominator overflow in the backward pass of large inputs under bf16 autocast."""


@dataclass(frozen=True)
class AttentionSettings:
    """What any attention kind may read to build itself; each reads its own fields."""

    causal: bool
    """Whether each query sees only the keys at or before its position."""
    dropout: float = 0.0
    """Dropout on attention probabilities (softmax)."""
    feature_map: Callable[[], FeatureMap] | None = None
    """Builds this attention's feature map (the linear kinds); called once per attention."""
    chunk_size: int | None = None
    """Chunk length of the chunked parallel algorithms; None: the kind's own default."""
    backend: str = "auto"
    """What runs the linear kinds: `auto`, `torch` or `triton` (see backends.py)."""
    heads: int = 1
    """Attention heads H (the gated kinds learn per-head gate parameters)."""
    head_dim: int = 1
    """Head width Dh."""
    gate: GateKind = "data"
    """The gated kinds' forget gate: `data`, `fixed` or `none` (see gates.py)."""
    window: int = 256
    """Keys a `sliding_window` query attends (W)."""


class Attention(nn.Module):
    """Base class. Subclasses set which directions they support.

    Shapes: `q: (B, H, Lq, Dh)`, `k, v: (B, H, Lk, Dh)`, `key_padding_mask: (B, Lk)` bool,
    True where a key is real; output `(B, H, Lq, Dh)`.
    """

    supports_causal: bool = False
    supports_bidirectional: bool = False
    supports_cross: bool = False
    """Whether it can attend another sequence's keys (cross-attention: queries and keys
    of different lengths, no positions shared)."""
    uses_feature_map: bool = False
    gated: bool = False
    """A gated kind (`gated_linear`, `delta`): reads `model.linear.gate`, and its block
    takes the short convolution and the output gate."""
    causal: bool = False
    extra_inputs: tuple[str, ...] = ()
    """Names of the per-head, per-position inputs `(B, H, L)` it reads from `extras`."""

    @classmethod
    def from_settings(cls, settings: AttentionSettings) -> Attention:
        """This kind built from the settings it reads."""
        raise NotImplementedError

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def step(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        state: AttentionState | None,
        rotary: Rotary | None = None,
        extras: Mapping[str, Tensor] | None = None,
    ) -> tuple[Tensor, AttentionState]:
        """Attend position t given the prefix's state: `q, k, v: (B, H, 1, Dh)`; `rotary`,
        if given, is at position t."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental step")


@contextmanager
def float32_region(device: torch.device) -> Iterator[None]:
    """Turn autocast off so sums and normalizers stay in float32 under bf16/fp16."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """The dtype sums and states are kept in: float32, or float64 when an input is float64
    (reference checks and gradcheck run there); half-precision inputs never set it."""
    dtype = torch.float32
    for tensor in tensors:
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype
