"""MQAR, multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and
Improving Recall in Efficient Language Models"): key-value pairs, then queries of the keys,
each followed by its value. It measures what a fixed-size state (linear attention) gives
up: every pair has to be held until it is queried.

An example is one line of printable ASCII, so the byte tokenizer (`tokenizer=byte`) reads
one token per key and per value:

    A!b)3%|b)A!3%
    pairs: a key then its value | queries: keys of the pairs, each then its value

- keys (`KEYS`, 64 symbols: letters, digits, `@` and `#`) are distinct within an example;
  values (`VALUES`, 25 punctuation marks) are drawn with replacement, so guessing gets 4%
  (Zoology draws distinct values from a large vocabulary, which one byte cannot hold);
- the number of pairs is uniform in `data.min_len..data.max_len` (1 to 64);
- every key is queried, in random order, as long as the example fits `MAX_CHARS` = 255
  characters (a block of 256 tokens with the end of the document): up to 63 pairs; of 64
  pairs, 63 random keys are;
- no filler: Zoology pads each example to one length and spreads the queries through the
  rest; here an example is only as long as its pairs and queries (4 n + 1 characters for n
  pairs: 65 for 16, 129 for 32), so a CPU run's blocks stay short. A query still comes up to
  a whole example after its pair.

The answers, on which the `mqar` metric scores a language model, are the values after the
queried keys: `answer_offsets` finds them in a document's text by this format's rule.
Validation and test examples are drawn from their own derived seeds, distinct and unseen in
train and in each other; the same seed gives the same splits on any machine.
"""

from __future__ import annotations

import hashlib
import random
import string

import datasets

from seq2seq.data.columns import TEXT

KEYS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "@#"
VALUES = "!$%&()*+,-./:;<=>?[]^_{}~"
"""The punctuation left by the keys and the separator, less quotes, backquote and backslash
(escaped in logs and JSON)."""
SEPARATOR = "|"
"""Between the pairs and the queries."""
MAX_PAIRS = len(KEYS)
MAX_CHARS = 255
"""The longest example: with the end-of-document token, a block of 256 tokens."""
DEFAULT_SIZES = {"train": 10_000, "validation": 500, "test": 500}
"""Examples per split when `data.*_size` is null."""
_DRAWS_PER_EXAMPLE = 20
_EXTRA_DRAWS = 1000
"""A held-out split gives up on unseen examples after this many draws per example (plus
the constant, for tiny splits)."""


def num_queries(num_pairs: int) -> int:
    """How many of `num_pairs` keys an example queries: all, or as many as fit
    `MAX_CHARS` (two characters a pair, one separator, two a query)."""
    return min(num_pairs, (MAX_CHARS - 2 * num_pairs - len(SEPARATOR)) // 2)


def draw_example(rng: random.Random, *, num_pairs: int) -> str:
    """One example of `num_pairs` pairs (distinct keys), then its queries in random order."""
    keys = rng.sample(KEYS, num_pairs)
    values = rng.choices(VALUES, k=num_pairs)
    queried = rng.sample(range(num_pairs), num_queries(num_pairs))
    pairs = "".join(key + value for key, value in zip(keys, values, strict=True))
    return pairs + SEPARATOR + "".join(keys[i] + values[i] for i in queried)


def answer_offsets(text: str) -> list[int]:
    """The character offsets of the answers of an MQAR example: the value after each
    queried key, in order. With the byte tokenizer these are token offsets too (the text is
    ASCII). Raises ValueError naming what breaks the format (a text that is no MQAR
    example has no answers to score)."""
    pairs, separator, queries = text.partition(SEPARATOR)
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not separator or not pairs or not queries or len(pairs) % 2 or len(queries) % 2:
        raise ValueError(
            f"{shown!r} is not an MQAR example: it must be key-value pairs, {SEPARATOR!r}, "
            "then queries of the keys each followed by its value"
        )
    memory: dict[str, str] = {}
    for offset in range(0, len(pairs), 2):
        key, value = pairs[offset], pairs[offset + 1]
        if key not in KEYS or value not in VALUES or key in memory:
            raise ValueError(
                f"{shown!r} is not an MQAR example: the pair {key + value!r} at character "
                f"{offset} is not a new key of {KEYS!r} then a value of {VALUES!r}"
            )
        memory[key] = value
    start = len(pairs) + len(SEPARATOR)
    offsets = []
    for offset in range(start, len(text), 2):
        key, value = text[offset], text[offset + 1]
        if memory.get(key) != value:
            raise ValueError(
                f"{shown!r} is not an MQAR example: the query {key + value!r} at character "
                f"{offset} is not one of its pairs"
            )
        offsets.append(offset + 1)
    return offsets


def _seed(seed: int, split: str) -> int:
    # A hash rather than `seed + k`, so that seed 0's validation never equals seed 1's train.
    return int.from_bytes(hashlib.sha256(f"mqar/{seed}/{split}".encode()).digest()[:8], "big")


def _check_settings(*, min_pairs: int, max_pairs: int, sizes: dict[str, int]) -> None:
    if min_pairs < 1:
        raise ValueError(f"data.min_len={min_pairs} must be at least 1 (MQAR: the fewest pairs)")
    if not min_pairs <= max_pairs <= MAX_PAIRS:
        raise ValueError(
            f"data.max_len={max_pairs} (MQAR: the most pairs) must be in "
            f"data.min_len={min_pairs}..{MAX_PAIRS} (the keys there are)"
        )
    for split, size in sizes.items():
        if size < 0:
            raise ValueError(f"data.{split}_size={size} must be non-negative")


def mqar_splits(
    *,
    train_size: int | None,
    validation_size: int | None,
    test_size: int | None,
    min_pairs: int,
    max_pairs: int,
    seed: int,
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` splits of MQAR examples with `min_pairs` to
    `max_pairs` pairs (a `text` column), each split from its own derived seed; validation
    and test are distinct and unseen in train and in each other (train may repeat)."""
    given = {"train": train_size, "validation": validation_size, "test": test_size}
    sizes = {split: DEFAULT_SIZES[split] if size is None else size for split, size in given.items()}
    _check_settings(min_pairs=min_pairs, max_pairs=max_pairs, sizes=sizes)
    seen: set[str] = set()
    result = {}
    for split, size in sizes.items():
        rng = random.Random(_seed(seed, split))
        texts: list[str] = []
        draws = size if split == "train" else _DRAWS_PER_EXAMPLE * size + _EXTRA_DRAWS
        for _ in range(draws):
            if len(texts) == size:
                break
            text = draw_example(rng, num_pairs=rng.randint(min_pairs, max_pairs))
            if split == "train" or text not in seen:
                seen.add(text)
                texts.append(text)
        if len(texts) < size:
            raise ValueError(
                f"MQAR drew only {len(texts)} of data.{split}_size={size} {split} examples "
                f"unseen in the earlier splits with data.min_len={min_pairs} to "
                f"data.max_len={max_pairs} pairs: raise data.max_len (more pairs, more "
                "distinct examples) or lower the split sizes"
            )
        features = datasets.Features({TEXT: datasets.Value("string")})
        result[split] = datasets.Dataset.from_dict({TEXT: texts}, features=features)
    return datasets.DatasetDict(result)
