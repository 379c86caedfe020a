"""The incremental decoding API that generation needs from a model.

Declared as Protocols so that generation never imports the model package: any object
with these methods can be decoded, including the toy models of the tests.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from torch import Tensor


class DecoderState(Protocol):
    """Everything a decoder caches between steps (KV caches, linear-attention sums, ...)."""

    def reorder(self, index: Tensor) -> DecoderState:
        """Select batch rows: ``index_select(0, index)`` on the batch dim of every cached tensor.

        index: (N,) long, rows of the current state; N may differ from the current batch
        size (beam search expands B sources to B*K rows, then reshuffles them each step).
        """
        ...


StateT = TypeVar("StateT", bound=DecoderState)


class IncrementalModel(Protocol[StateT]):
    """An encoder-decoder that decodes one target token at a time, with its own state type."""

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        """Encode the source.

        src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
        Returns memory: (B, S, D).
        """
        ...

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> StateT:
        """Start decoding; cross-attention keys and values are computed here, once.

        memory: (B, S, D); memory_mask: (B, S) bool, True where a token is real.
        """
        ...

    def step(self, tokens: Tensor, state: StateT) -> tuple[Tensor, StateT]:
        """Feed the last token of every row and return next-token logits.

        tokens: (B,) long, bos on the first call. Returns logits (B, V) and the new state.
        """
        ...
