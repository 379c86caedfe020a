"""Levenshtein distance against hand-counted edits."""

from __future__ import annotations

import pytest

from seq2seq.evaluation import levenshtein


@pytest.mark.parametrize(
    ("hypothesis", "reference", "distance"),
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "abc", 3),
        ("abc", "abc", 0),
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("flaw", "lawn", 2),  # -f, +n
        ("ab", "ba", 2),  # no transpositions in Levenshtein
        (["HH", "AH", "L", "OW"], ["HH", "EH", "L", "OW"], 1),
        (["the", "cat", "sat"], ["cat", "sat", "down"], 2),
    ],
)
def test_levenshtein(
    hypothesis: str | list[str], reference: str | list[str], distance: int
) -> None:
    assert levenshtein(hypothesis, reference) == distance
    assert levenshtein(reference, hypothesis) == distance
