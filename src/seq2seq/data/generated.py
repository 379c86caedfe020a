"""Generated datasets, each for one kind of training (`data.builtin=<name>`).

- seq2seq (`source`, `target`): reverse, copy, sort ("abcd" -> "dcba"), and addition of
  decimal integers ("123+45" -> "168");
- classification (`text`, `label`): majority, the most frequent letter of a string
  ("abcbb" -> "b"; strings with a tie are not drawn), which a model has to count for; and
  brackets, whether a string of brackets is balanced, where an unbalanced string is a
  shuffle of a balanced one (same brackets, same counts: only their order tells);
- language modeling (`text`): dyck, balanced strings of two kinds of brackets ("([]())"),
  a formal language whose samples can be checked by a rule (`is_balanced`).

Each generator draws one example at a time from a `random.Random`, so a dataset is a pure
function of its settings and seed. Letters are the first `num_symbols` lowercase ones;
addition and dyck ignore `num_symbols`. `min_len` and `max_len` bound the length (letters,
digits of each addend, or brackets).
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import datasets

from seq2seq.data.columns import LABEL, SOURCE, TARGET, TEXT

logger = logging.getLogger(__name__)

MAX_SYMBOLS = len(string.ascii_lowercase)
SPLITS = ("train", "validation", "test")

# An evaluation split may redraw this many times its size (plus a constant, for tiny
# splits) while looking for sources unseen in train before it gives up on disjointness.
_DRAWS_PER_EXAMPLE = 20
_EXTRA_DRAWS = 1000


class DrawFn(Protocol):
    """Draws one example: its fields, in the dataset's order."""

    def __call__(
        self, rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
    ) -> tuple[str, ...]: ...


def _symbols(rng: random.Random, *, min_len: int, max_len: int, num_symbols: int) -> str:
    alphabet = string.ascii_lowercase[:num_symbols]
    return "".join(rng.choices(alphabet, k=rng.randint(min_len, max_len)))


def _reverse(
    rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
) -> tuple[str, str]:
    source = _symbols(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    return source, source[::-1]


def _copy(rng: random.Random, *, min_len: int, max_len: int, num_symbols: int) -> tuple[str, str]:
    source = _symbols(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    return source, source


def _sort(rng: random.Random, *, min_len: int, max_len: int, num_symbols: int) -> tuple[str, str]:
    source = _symbols(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    return source, "".join(sorted(source))


def _number(rng: random.Random, *, min_len: int, max_len: int) -> int:
    digits = rng.randint(min_len, max_len)
    # The lowest number with `digits` digits, so the length is exact ("0" has one digit).
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def _addition(
    rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
) -> tuple[str, str]:
    a = _number(rng, min_len=min_len, max_len=max_len)
    b = _number(rng, min_len=min_len, max_len=max_len)
    return f"{a}+{b}", str(a + b)


def _majority(
    rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
) -> tuple[str, str]:
    while True:
        text = _symbols(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        counts = [count for _, count in Counter(text).most_common(2)]
        if len(counts) == 1 or counts[0] > counts[1]:
            return text, Counter(text).most_common(1)[0][0]


BRACKETS = {"(": ")", "[": "]"}
"""Each opening bracket of the Dyck language and the bracket that closes it."""


def is_balanced(text: str) -> bool:
    """Whether `text` is a non-empty string of `BRACKETS` in which every bracket closes
    the last one opened: a word of the Dyck language."""
    stack: list[str] = []
    for character in text:
        if character in BRACKETS:
            stack.append(BRACKETS[character])
        elif not stack or stack.pop() != character:
            return False
    return bool(text) and not stack


def _dyck(rng: random.Random, *, min_len: int, max_len: int, num_symbols: int) -> tuple[str]:
    """A balanced string of an even length in `min_len..max_len` (rounded up to even)."""
    length = rng.randint((min_len + 1) // 2, max(max_len // 2, (min_len + 1) // 2)) * 2
    stack: list[str] = []
    out = []
    for position in range(length):
        remaining = length - position
        if stack and (remaining == len(stack) or rng.random() < 0.5):
            out.append(stack.pop())
        else:
            opening = rng.choice(sorted(BRACKETS))
            out.append(opening)
            stack.append(BRACKETS[opening])
    return ("".join(out),)


def _brackets(
    rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
) -> tuple[str, str]:
    """A bracket string labelled `balanced` or `unbalanced`, each half the time. An
    unbalanced one is a shuffle of a balanced one, so both classes hold the same brackets
    in the same numbers: only their order tells them apart, not their counts."""
    (text,) = _dyck(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    if rng.random() < 0.5:
        return text, "balanced"
    while True:
        shuffled = "".join(rng.sample(text, len(text)))
        if not is_balanced(shuffled):
            return shuffled, "unbalanced"


@dataclass(frozen=True)
class Generator:
    draw: DrawFn
    fields: tuple[str, ...]
    """The columns it makes, in the order `draw` returns them."""
    reads_symbols: bool = True
    """Whether `num_symbols` picks its alphabet."""


PAIRS = (SOURCE, TARGET)
GENERATORS: dict[str, Generator] = {
    "reverse": Generator(_reverse, PAIRS),
    "copy": Generator(_copy, PAIRS),
    "sort": Generator(_sort, PAIRS),
    "addition": Generator(_addition, PAIRS, reads_symbols=False),
    "majority": Generator(_majority, (TEXT, LABEL)),
    "brackets": Generator(_brackets, (TEXT, LABEL), reads_symbols=False),
    "dyck": Generator(_dyck, (TEXT,), reads_symbols=False),
}


def _generator(name: str) -> Generator:
    try:
        return GENERATORS[name]
    except KeyError:
        raise ValueError(
            f"data.builtin={name!r} is not a generated dataset; choose one of {sorted(GENERATORS)}"
        ) from None


def _check_settings(name: str, *, min_len: int, max_len: int, num_symbols: int) -> None:
    if min_len < 1:
        raise ValueError(f"data.min_len={min_len} must be at least 1")
    if max_len < min_len:
        raise ValueError(f"data.max_len={max_len} must be at least data.min_len={min_len}")
    if GENERATORS[name].reads_symbols and not 1 <= num_symbols <= MAX_SYMBOLS:
        raise ValueError(
            f"data.num_symbols={num_symbols} must be in 1..{MAX_SYMBOLS} (lowercase letters)"
        )


def _check_size(field: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"data.{field}={value} must be non-negative")


def _to_dataset(rows: list[tuple[str, ...]], fields: tuple[str, ...]) -> datasets.Dataset:
    features = datasets.Features({field: datasets.Value("string") for field in fields})
    columns = {field: [row[i] for row in rows] for i, field in enumerate(fields)}
    return datasets.Dataset.from_dict(columns, features=features)


def generate_examples(
    name: str, *, num_examples: int, min_len: int, max_len: int, num_symbols: int, seed: int
) -> datasets.Dataset:
    """`num_examples` examples of the generated dataset `name`, with its string columns
    (`GENERATORS[name].fields`).

    Sequence lengths (letters, or digits of each addend for addition) are uniform in
    `min_len..max_len`. The same arguments always give the same dataset.
    """
    generator = _generator(name)
    _check_settings(name, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    _check_size("num_examples", num_examples)
    rng = random.Random(seed)
    rows = [
        generator.draw(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        for _ in range(num_examples)
    ]
    return _to_dataset(rows, generator.fields)


def _derived_seed(seed: int, split: str) -> int:
    # A hash rather than `seed + k`, so that seed 0's validation never equals seed 1's train.
    digest = hashlib.sha256(f"{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _unseen_examples(
    draw: DrawFn,
    rng: random.Random,
    *,
    size: int,
    seen: set[str],
    split: str,
    min_len: int,
    max_len: int,
    num_symbols: int,
) -> list[tuple[str, ...]]:
    """`size` examples whose inputs (first fields) are not in `seen` (nor repeated), where
    the space allows.

    When the generator's space is too small, the remainder is drawn without that rule and a
    warning says how many examples may overlap.
    """
    pairs: list[tuple[str, ...]] = []
    sources: set[str] = set()
    for _ in range(_DRAWS_PER_EXAMPLE * size + _EXTRA_DRAWS):
        if len(pairs) == size:
            break
        row = draw(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        if row[0] not in seen and row[0] not in sources:
            sources.add(row[0])
            pairs.append(row)
    if len(pairs) < size:
        logger.warning(
            "only %d of %d %s examples are unseen in earlier splits: the generator's space is too "
            "small; the other %d may repeat training sources",
            len(pairs),
            size,
            split,
            size - len(pairs),
        )
        pairs += [
            draw(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
            for _ in range(size - len(pairs))
        ]
    return pairs


DEFAULT_SIZES = {"train": 10_000, "validation": 500, "test": 500}
"""Examples per split of a generated dataset whose `data.*_size` is null."""


def generate_splits(
    name: str,
    *,
    train_size: int | None,
    validation_size: int | None,
    test_size: int | None,
    min_len: int,
    max_len: int,
    num_symbols: int,
    seed: int,
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` splits of the generated dataset `name`, each from its own derived seed.

    Validation and test inputs are distinct, unseen in train and in each other, as far
    as the generator's space allows (see `_unseen_examples`). Train may repeat itself, like
    any sample.
    """
    generator = _generator(name)
    _check_settings(name, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    given = {"train": train_size, "validation": validation_size, "test": test_size}
    sizes = {split: DEFAULT_SIZES[split] if size is None else size for split, size in given.items()}
    for split, size in sizes.items():
        _check_size(f"{split}_size", size)

    train_rng = random.Random(_derived_seed(seed, "train"))
    train = [
        generator.draw(train_rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        for _ in range(sizes["train"])
    ]
    seen = {row[0] for row in train}
    result = {"train": _to_dataset(train, generator.fields)}
    for split in ("validation", "test"):
        pairs = _unseen_examples(
            generator.draw,
            random.Random(_derived_seed(seed, split)),
            size=sizes[split],
            seen=seen,
            split=split,
            min_len=min_len,
            max_len=max_len,
            num_symbols=num_symbols,
        )
        seen.update(row[0] for row in pairs)
        result[split] = _to_dataset(pairs, generator.fields)
    return datasets.DatasetDict(result)
