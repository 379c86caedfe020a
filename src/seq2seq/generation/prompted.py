"""A decoder-only language model seen by the decoding strategies as an encoder-decoder.

The strategies decode a "source" into an output: here the source is the prompt, and the
output its continuation. `init_state` runs all of the prompt but its last token through
the model's incremental state (a KV cache, or causal-linear's constant-size state); the
strategies' first `step` then feeds that last token (in place of their bos), and every
later step a generated one. So greedy search, beam search and sampling all continue
prompts with the same code that decodes translations.

Every prompt of a batch must have the same length (they share positions): batch prompts
by length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from torch import Tensor

from seq2seq.generation.protocol import DecoderState


class LanguageModel(Protocol):
    def init_state(self) -> DecoderState: ...

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]: ...


@dataclass
class PromptState:
    inner: DecoderState
    pending: Tensor | None
    """The prompt's last tokens `(B,)`, fed at the first step; None afterwards."""

    def reorder(self, index: Tensor) -> PromptState:
        pending = None if self.pending is None else self.pending.index_select(0, index)
        return replace(self, inner=self.inner.reorder(index), pending=pending)


class PromptedModel:
    """`model` continuing prompts; `encode(prompts, mask)` takes `(B, P)` prompts of one
    length P >= 1 (the mask is all True)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        if not bool(src_mask.all()):
            raise ValueError("the prompts of one batch must all have the same length")
        return src_tokens

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> PromptState:
        state = self.model.init_state()
        for position in range(memory.shape[1] - 1):
            _, state = self.model.step(memory[:, position], state)
        return PromptState(state, memory[:, -1])

    def step(self, tokens: Tensor, state: PromptState) -> tuple[Tensor, PromptState]:
        fed = tokens if state.pending is None else state.pending
        logits, inner = self.model.step(fed, state.inner)
        return logits, PromptState(inner, None)
