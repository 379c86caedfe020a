"""Built-in generated tasks: reverse, copy, sort and addition.

Each task draws one example at a time from a `random.Random`, so a dataset is a pure
function of its settings and seed. Symbols are the first `num_symbols` lowercase
letters, written without separators ("abcd" -> "dcba"); addition writes decimal
integers ("123+45" -> "168") and ignores `num_symbols`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from typing import Protocol

import datasets

from seq2seq.data.columns import SOURCE, TARGET

logger = logging.getLogger(__name__)

MAX_SYMBOLS = len(string.ascii_lowercase)
SPLITS = ("train", "validation", "test")

# An evaluation split may redraw this many times its size (plus a constant, for tiny
# splits) while looking for sources unseen in train before it gives up on disjointness.
_DRAWS_PER_EXAMPLE = 20
_EXTRA_DRAWS = 1000


class TaskFn(Protocol):
    """Draws one `(source, target)` example."""

    def __call__(
        self, rng: random.Random, *, min_len: int, max_len: int, num_symbols: int
    ) -> tuple[str, str]: ...


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


TASKS: dict[str, TaskFn] = {
    "reverse": _reverse,
    "copy": _copy,
    "sort": _sort,
    "addition": _addition,
}


def _task(name: str) -> TaskFn:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"data.task={name!r} is not a built-in task; choose one of {sorted(TASKS)}"
        ) from None


def _check_settings(name: str, *, min_len: int, max_len: int, num_symbols: int) -> None:
    if min_len < 1:
        raise ValueError(f"data.min_len={min_len} must be at least 1")
    if max_len < min_len:
        raise ValueError(f"data.max_len={max_len} must be at least data.min_len={min_len}")
    if name != "addition" and not 1 <= num_symbols <= MAX_SYMBOLS:
        raise ValueError(
            f"data.num_symbols={num_symbols} must be in 1..{MAX_SYMBOLS} (lowercase letters)"
        )


def _check_size(field: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"data.{field}={value} must be non-negative")


def _to_dataset(pairs: list[tuple[str, str]]) -> datasets.Dataset:
    features = datasets.Features(
        {SOURCE: datasets.Value("string"), TARGET: datasets.Value("string")}
    )
    return datasets.Dataset.from_dict(
        {SOURCE: [s for s, _ in pairs], TARGET: [t for _, t in pairs]}, features=features
    )


def generate_task(
    name: str, *, num_examples: int, min_len: int, max_len: int, num_symbols: int, seed: int
) -> datasets.Dataset:
    """`num_examples` examples of task `name`, with string columns `source` and `target`.

    Sequence lengths (letters, or digits of each addend for addition) are uniform in
    `min_len..max_len`. The same arguments always give the same dataset.
    """
    task = _task(name)
    _check_settings(name, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    _check_size("num_examples", num_examples)
    rng = random.Random(seed)
    pairs = [
        task(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        for _ in range(num_examples)
    ]
    return _to_dataset(pairs)


def _derived_seed(seed: int, split: str) -> int:
    # A hash rather than `seed + k`, so that seed 0's validation never equals seed 1's train.
    digest = hashlib.sha256(f"{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _unseen_examples(
    task: TaskFn,
    rng: random.Random,
    *,
    size: int,
    seen: set[str],
    split: str,
    min_len: int,
    max_len: int,
    num_symbols: int,
) -> list[tuple[str, str]]:
    """`size` examples whose sources are not in `seen` (nor repeated), where the space allows.

    When the task's space is too small, the remainder is drawn without that rule and a
    warning says how many examples may overlap.
    """
    pairs: list[tuple[str, str]] = []
    sources: set[str] = set()
    for _ in range(_DRAWS_PER_EXAMPLE * size + _EXTRA_DRAWS):
        if len(pairs) == size:
            break
        source, target = task(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        if source not in seen and source not in sources:
            sources.add(source)
            pairs.append((source, target))
    if len(pairs) < size:
        logger.warning(
            "only %d of %d %s examples are unseen in earlier splits: the task's space is too "
            "small; the other %d may repeat training sources",
            len(pairs),
            size,
            split,
            size - len(pairs),
        )
        pairs += [
            task(rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
            for _ in range(size - len(pairs))
        ]
    return pairs


DEFAULT_SIZES = {"train": 10_000, "validation": 500, "test": 500}
"""Examples per split of a generated task whose `data.*_size` is null."""


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
    """`train`, `validation` and `test` splits of task `name`, each from its own derived seed.

    Validation and test sources are distinct, unseen in train and in each other, as far
    as the task's space allows (see `_unseen_examples`). Train may repeat itself, like
    any sample.
    """
    task = _task(name)
    _check_settings(name, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    given = {"train": train_size, "validation": validation_size, "test": test_size}
    sizes = {split: DEFAULT_SIZES[split] if size is None else size for split, size in given.items()}
    for split, size in sizes.items():
        _check_size(f"{split}_size", size)

    train_rng = random.Random(_derived_seed(seed, "train"))
    train = [
        task(train_rng, min_len=min_len, max_len=max_len, num_symbols=num_symbols)
        for _ in range(sizes["train"])
    ]
    seen = {source for source, _ in train}
    result = {"train": _to_dataset(train)}
    for split in ("validation", "test"):
        pairs = _unseen_examples(
            task,
            random.Random(_derived_seed(seed, split)),
            size=sizes[split],
            seen=seen,
            split=split,
            min_len=min_len,
            max_len=max_len,
            num_symbols=num_symbols,
        )
        seen.update(source for source, _ in pairs)
        result[split] = _to_dataset(pairs)
    return datasets.DatasetDict(result)
