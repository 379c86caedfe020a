"""Outputs that stopped at their length limit: counted, and named in one warning line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from seq2seq.generation.hypothesis import Hypothesis

log = logging.getLogger("seq2seq.generate")

AT_LIMIT = "at_length_limit"
"""The figure that counts the outputs that stopped at their length limit (eos forced)."""


def count_at_limit(nbests: Sequence[Sequence[Hypothesis]]) -> int:
    """How many of the best hypotheses reached their length limit."""
    return sum(bool(nbest) and nbest[0].at_limit for nbest in nbests)


def warn_at_limit(count: int, total: int, what: str, advice: str) -> None:
    """One warning line when outputs stopped at their length limit; nothing otherwise."""
    if count:
        log.warning(
            "%d of %d %s stopped at the length limit (eos forced there; they may be cut short): %s",
            count,
            total,
            what,
            advice,
        )
