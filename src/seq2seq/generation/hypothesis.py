"""Hypothesis: one decoded output with its scores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """A decoded output.

    tokens: the output token ids, without bos and eos.
    score: the length-normalised log-probability that ranks hypotheses,
        ``log_prob / lp(len(tokens) + 1)`` (see ``GenerationConfig.length_penalty``).
    log_prob: the model's log-probability of the tokens followed by eos, a raw sum of
        log-softmax values (no temperature, no filtering; forced tokens included).
    at_limit: the output reached its length limit, where eos is forced: it may be cut
        short of what the model would have written.
    """

    tokens: list[int]
    score: float
    log_prob: float
    at_limit: bool = False
