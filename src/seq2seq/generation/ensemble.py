"""Ensembles: several trained models seen as one, their distributions averaged.

At every step (and in every full forward pass) the ensemble's distribution is the mean of
its members' probabilities, returned as log-probabilities: ``logsumexp_i log_softmax(z_i)
- log N``, what fairseq's ``EnsembleModel.forward_decoder`` computes. Its output is
normalized, so the strategies and losses that take logits (they apply ``log_softmax``
first) read it unchanged; a classifier's class probabilities are averaged the same way.
One member's logits pass through untouched, so an ensemble of one decodes bit for bit as
the model alone.

Each member keeps its own incremental state (a KV cache beside a causal-linear (S, z)
state); the ensemble's state is the tuple of them, and ``reorder`` reorders every one, so
greedy search, beam search and sampling decode an ensemble with their usual code. Members
may differ in anything but their vocabulary (depth, width, attention kinds): the caller
checks that they share one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

from seq2seq.generation.protocol import DecoderState, IncrementalModel


def average_log_probs(logits: Sequence[Tensor]) -> Tensor:
    """The log of the mean of the members' probabilities.

    logits: N >= 1 tensors (..., V), one per member -> (..., V) float32 log-probabilities
    (one member: its logits as they are, which the callers normalize themselves).
    """
    if len(logits) == 1:
        return logits[0]
    log_probs = torch.stack([torch.log_softmax(member.float(), dim=-1) for member in logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


@dataclass(frozen=True)
class EnsembleState:
    """The members' decoding states, in member order."""

    members: tuple[DecoderState, ...]

    def reorder(self, index: Tensor) -> EnsembleState:
        """index: (N,) long rows; every member's state follows the same rows."""
        return EnsembleState(tuple(state.reorder(index) for state in self.members))


class Ensemble(nn.Module):
    """Members averaged in their forward pass: ``forward(*inputs)`` takes what each member's
    forward takes and returns averaged log-probabilities shaped like a member's logits
    (a classifier's `(B, C)`, a language model's `(B, T, V)`)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: Any) -> Tensor:
        return average_log_probs([member(*inputs) for member in self.members])


class _Stepper(Protocol):
    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, DecoderState]: ...


class _DecodingEnsemble(Ensemble):
    """What both decoding ensembles share: one step of every member, averaged."""

    def step(self, tokens: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState]:
        """tokens: (B,) long -> averaged log-probabilities (B, V) and every member's new state."""
        if len(state.members) != len(self.members):
            raise ValueError(
                f"an ensemble of {len(self.members)} models got {len(state.members)} states"
            )
        logits, states = [], []
        for member, member_state in zip(self.members, state.members, strict=True):
            member_logits, new_state = cast(_Stepper, member).step(tokens, member_state)
            logits.append(member_logits)
            states.append(new_state)
        return average_log_probs(logits), EnsembleState(tuple(states))


class EncoderDecoderEnsemble(_DecodingEnsemble):
    """Encoder-decoders decoded as one `IncrementalModel`. The members' encoder outputs
    differ in width, so `encode` hands the source on and `init_state` encodes it with every
    member (still once per source)."""

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        """src_tokens, src_mask: (B, S) -> src_tokens, which `init_state` takes as memory."""
        return src_tokens

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> EnsembleState:
        """memory: (B, S) long, the source as `encode` returned it; memory_mask: (B, S) bool."""
        states = []
        for member in self.members:
            model = cast(IncrementalModel[DecoderState], member)
            states.append(model.init_state(model.encode(memory, memory_mask), memory_mask))
        return EnsembleState(tuple(states))


class _LanguageModel(Protocol):
    def init_state(self) -> DecoderState: ...


class LanguageModelEnsemble(_DecodingEnsemble):
    """Decoder-only language models, continued as one (`PromptedModel` takes it)."""

    def init_state(self) -> EnsembleState:
        return EnsembleState(
            tuple(cast(_LanguageModel, member).init_state() for member in self.members)
        )


ENSEMBLES: dict[str, type[Ensemble]] = {
    "encoder_decoder": EncoderDecoderEnsemble,
    "decoder_lm": LanguageModelEnsemble,
    "encoder_classifier": Ensemble,
}
"""The ensemble of each model kind (a task's `model_kind`): what its task calls besides
the forward pass."""


def ensemble(members: Sequence[nn.Module], *, model_kind: str) -> Ensemble:
    """`members`, all of `model_kind`, as one model; an unknown kind lists the valid ones."""
    try:
        kind = ENSEMBLES[model_kind]
    except KeyError:
        raise ValueError(
            f"no ensemble for model kind {model_kind!r}; valid kinds: {', '.join(ENSEMBLES)}"
        ) from None
    return kind(members)
