"""GNMT's length penalty, which turns a summed log-probability into a ranking score."""

from __future__ import annotations


def length_penalty(length: int, alpha: float) -> float:
    """``lp = ((5 + length) / 6) ** alpha`` (Wu et al. 2016, eq. 14).

    length counts the scored tokens, eos included. Dividing a (negative) log-probability
    by lp > 1 shrinks its magnitude, more so for long outputs, which offsets the
    shortness bias of raw log-probabilities; alpha = 0 gives lp = 1 (no normalisation).
    """
    return ((5.0 + length) / 6.0) ** alpha


def normalised_score(log_prob: float, length: int, alpha: float) -> float:
    """The ranking score of a hypothesis: its log-probability divided by the length penalty."""
    return log_prob / length_penalty(length, alpha)
