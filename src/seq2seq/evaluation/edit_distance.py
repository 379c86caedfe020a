"""Levenshtein edit distance over arbitrary sequences (tokens or characters)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def levenshtein(hypothesis: Sequence[Hashable], reference: Sequence[Hashable]) -> int:
    """Minimum number of insertions, deletions and substitutions turning one into the other.

    Works on any sequences whose items compare with ``==``: a list of whitespace tokens
    gives a word (or phoneme) edit distance, a string gives a character edit distance.
    Dynamic programming over one row at a time: O(len(h) * len(r)) time, O(len(r)) memory.
    """
    previous = list(range(len(reference) + 1))
    for i, hyp_item in enumerate(hypothesis, start=1):
        current = [i]
        for j, ref_item in enumerate(reference, start=1):
            current.append(
                min(
                    previous[j] + 1,  # delete hyp_item
                    current[j - 1] + 1,  # insert ref_item
                    previous[j - 1] + (hyp_item != ref_item),  # substitute or match
                )
            )
        previous = current
    return previous[-1]
