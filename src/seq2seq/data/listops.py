"""ListOps (Nangia & Bowman 2018; Long Range Arena, Tay et al. 2020): evaluate a nested list
expression, a classification task over long sequences.

Trees follow LRA's generator: below depth 10 a node is an operator with probability 0.25
(else a digit 0-9); an operator takes 2 to 9 arguments. Operators: MIN, MAX, MED (the
median, rounded down to an integer, as LRA's `int(np.median(...))`) and SM (sum mod 10).
A tree is written as its tokens separated by spaces, closing brackets included:
`[MAX 2 9 [MIN 4 7 ] 0 ]` (LRA's pipeline dropped the `]` tokens while tokenizing;
here each is a token, and a word tokenizer reads one piece per token). A tree is kept
when its length (operators, digits and closing brackets) lies strictly between `min_len`
and `max_len` (LRA: 500 and 2,000); trees are deduplicated across all splits; the label
is its value. The same seed gives the same splits on any machine.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections.abc import Callable

import datasets

from seq2seq.data.columns import LABEL, TEXT

MAX_DEPTH = 10
OPERATOR_PROBABILITY = 0.25
MIN_ARGUMENTS, MAX_ARGUMENTS = 2, 9
OPERATORS: dict[str, Callable[[list[int]], int]] = {
    "[MIN": min,
    "[MAX": max,
    "[MED": lambda values: int(statistics.median(values)),
    "[SM": lambda values: sum(values) % 10,
}
END = "]"
DEFAULT_SIZES = {"train": 20_000, "validation": 1_000, "test": 1_000}
"""Examples per split when `data.*_size` is null (LRA has 96,000 / 2,000 / 2,000)."""
_DRAWS_PER_EXAMPLE = 10_000
"""Give up after this many rejected trees per wanted example: the bounds admit too few."""


class _TooLong(Exception):
    """A tree grew past the length it may have: it would be rejected whole."""


def draw_tree(rng: random.Random, *, limit: int | None = None) -> list[str] | None:
    """One tree's tokens, drawn as LRA's generator draws them; None once it reaches
    `limit` tokens (such a tree would be rejected, so drawing it to the end is wasted)."""
    tokens: list[str] = []

    def grow(depth: int) -> None:
        if limit is not None and len(tokens) >= limit:
            raise _TooLong
        if depth < MAX_DEPTH and rng.random() < OPERATOR_PROBABILITY:
            tokens.append(rng.choice(sorted(OPERATORS)))
            for _ in range(rng.randint(MIN_ARGUMENTS, MAX_ARGUMENTS)):
                grow(depth + 1)
            tokens.append(END)
        else:
            tokens.append(str(rng.randrange(10)))

    try:
        grow(1)
    except _TooLong:
        return None
    return tokens


def evaluate(tokens: list[str]) -> int:
    """The value of a tree's tokens (a stack machine: operators open, `]` applies)."""
    stack: list[list[int | str]] = [[]]
    for token in tokens:
        if token in OPERATORS:
            stack.append([token])
        elif token == END:
            operator, *values = stack.pop()
            stack[-1].append(OPERATORS[str(operator)]([int(v) for v in values]))
        else:
            stack[-1].append(int(token))
    (value,) = stack[0]
    return int(value)


def _seed(seed: int, split: str) -> int:
    return int.from_bytes(hashlib.sha256(f"listops/{seed}/{split}".encode()).digest()[:8], "big")


def listops_splits(
    *,
    train_size: int | None,
    validation_size: int | None,
    test_size: int | None,
    min_len: int,
    max_len: int,
    seed: int,
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` splits of distinct trees with `min_len < length <
    max_len`, each split from its own derived seed; string columns `text` and `label`."""
    if max_len - min_len < 2:
        raise ValueError(
            f"data.min_len={min_len} and data.max_len={max_len} leave no tree length strictly "
            "between them"
        )
    given = {"train": train_size, "validation": validation_size, "test": test_size}
    seen: set[str] = set()
    result = {}
    for split, size in given.items():
        wanted = DEFAULT_SIZES[split] if size is None else size
        rng = random.Random(_seed(seed, split))
        texts: list[str] = []
        labels: list[str] = []
        for _ in range(_DRAWS_PER_EXAMPLE * wanted):
            if len(texts) == wanted:
                break
            tokens = draw_tree(rng, limit=max_len)
            if tokens is None or not min_len < len(tokens) < max_len:
                continue
            text = " ".join(tokens)
            if text in seen:
                continue
            seen.add(text)
            texts.append(text)
            labels.append(str(evaluate(tokens)))
        if len(texts) < wanted:
            raise ValueError(
                f"ListOps drew only {len(texts)} of {wanted} distinct {split} trees with "
                f"{min_len} < length < {max_len}; widen data.min_len..data.max_len"
            )
        features = datasets.Features(
            {TEXT: datasets.Value("string"), LABEL: datasets.Value("string")}
        )
        result[split] = datasets.Dataset.from_dict({TEXT: texts, LABEL: labels}, features=features)
    return datasets.DatasetDict(result)
