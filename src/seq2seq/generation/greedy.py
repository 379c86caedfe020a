"""Greedy search: the most likely token at every step."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.protocol import IncrementalModel
from seq2seq.generation.single_path import decode_single_path


def greedy_search(
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
    """Decode each source by always taking the argmax token.

    src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
    Returns B lists holding one Hypothesis each.
    """
    return decode_single_path(
        model,
        src_tokens,
        src_mask,
        settings,
        choose=_argmax,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
    )


def _argmax(logits: Tensor) -> Tensor:
    """logits: (B, V) -> (B,) long."""
    return logits.argmax(dim=-1)
