"""The strategy registry and ``generate``, the one entry point for decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.beam import beam_search
from seq2seq.generation.greedy import greedy_search
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.protocol import IncrementalModel
from seq2seq.generation.sampling import sample_sequences


class Strategy(Protocol):
    """A decoding strategy: sources in, one n-best list per source out."""

    def __call__(
        self,
        model: IncrementalModel,
        src_tokens: Tensor,
        src_mask: Tensor,
        settings: GenerationConfig,
        *,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        source_ids: Sequence[int] | None = None,
    ) -> list[list[Hypothesis]]: ...


STRATEGIES: dict[str, Strategy] = {
    "greedy": greedy_search,
    "beam": beam_search,
    "sample": sample_sequences,
}


def get_strategy(name: str) -> Strategy:
    """Look up a strategy by name; an unknown name raises ValueError listing the valid ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown generation.strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}"
        ) from None


def generate(
    model: IncrementalModel,
    src_tokens: Tensor,
    src_mask: Tensor,
    settings: GenerationConfig,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    source_ids: Sequence[int] | None = None,
) -> list[list[Hypothesis]]:
    """Decode a padded batch of sources with ``settings.strategy``, without autograd.

    src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
    Returns B lists of hypotheses, best first: up to ``settings.nbest`` for beam search,
    one for greedy search and sampling. Each source's max output length comes from its
    own unpadded length, so a batch decodes exactly like its sources one at a time.
    `source_ids`: each row's index in the whole input (default 0..B-1); sampling seeds
    each row's draws from it, so a corpus samples the same however it is batched.
    Put the model in eval mode first (dropout would make decoding random).
    """
    if src_tokens.dim() != 2 or src_tokens.dtype != torch.long:
        raise ValueError(
            f"src_tokens must be a (B, S) long tensor, got shape {tuple(src_tokens.shape)} "
            f"and dtype {src_tokens.dtype}"
        )
    if src_mask.shape != src_tokens.shape or src_mask.dtype != torch.bool:
        raise ValueError(
            f"src_mask must be a bool tensor shaped like src_tokens {tuple(src_tokens.shape)}, "
            f"got shape {tuple(src_mask.shape)} and dtype {src_mask.dtype}"
        )
    strategy = get_strategy(settings.strategy)
    with torch.inference_mode():
        return strategy(
            model,
            src_tokens,
            src_mask,
            settings,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
            source_ids=source_ids,
        )
