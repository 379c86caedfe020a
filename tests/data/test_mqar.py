"""MQAR's generator against a plain parse of its format: pairs of distinct keys, a separator,
queries each followed by its pair's value; the answers its rule finds; the splits, their
settings and the bad ones."""

from __future__ import annotations

import random
import string

import pytest

from seq2seq.config.data import DataConfig
from seq2seq.data.builtin import builtin_dataset
from seq2seq.data.checks import check_data_source
from seq2seq.data.columns import TEXT
from seq2seq.data.mqar import (
    KEYS,
    MAX_CHARS,
    SEPARATOR,
    VALUES,
    answer_offsets,
    draw_example,
    mqar_splits,
)
from seq2seq.tokenizer import ByteTokenizer


def _parse(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pairs, queries) of an example, each as (key, value), split at its one separator."""
    head, tail = text.split(SEPARATOR)
    return (
        [(head[i], head[i + 1]) for i in range(0, len(head), 2)],
        [(tail[i], tail[i + 1]) for i in range(0, len(tail), 2)],
    )


def _splits(**overrides: int) -> dict[str, list[str]]:
    settings = {
        "train_size": 300,
        "validation_size": 50,
        "test_size": 50,
        "min_pairs": 2,
        "max_pairs": 6,
        "seed": 7,
    } | overrides
    made = mqar_splits(**settings)
    return {split: list(made[split][TEXT]) for split in ("train", "validation", "test")}


def test_the_alphabets_are_disjoint_printable_bytes() -> None:
    assert len(set(KEYS)) == len(KEYS) == 64
    assert len(set(VALUES)) == len(VALUES) == 25
    assert not set(KEYS) & set(VALUES) and SEPARATOR not in KEYS + VALUES
    printable = set(string.printable) - set(string.whitespace)
    assert set(KEYS + VALUES + SEPARATOR) <= printable


@pytest.mark.parametrize("num_pairs", [1, 2, 16, 32, 63, 64])
def test_an_example_is_pairs_then_queries_of_its_keys_one_byte_each(num_pairs: int) -> None:
    rng = random.Random(num_pairs)
    for _ in range(20):
        text = draw_example(rng, num_pairs=num_pairs)
        pairs, queries = _parse(text)
        assert len(pairs) == num_pairs
        keys = [key for key, _ in pairs]
        assert len(set(keys)) == num_pairs and set(keys) <= set(KEYS)
        assert {value for _, value in pairs} <= set(VALUES)
        memory = dict(pairs)
        assert all(memory[key] == value for key, value in queries)
        assert len({key for key, _ in queries}) == len(queries)
        # Every key is queried while the example fits 255 bytes: 4n + 1 characters.
        assert len(queries) == (num_pairs if num_pairs < 64 else 63)
        assert len(text) == 2 * num_pairs + 1 + 2 * len(queries) <= MAX_CHARS
        assert len(ByteTokenizer().encode(text)) == len(text)


def test_the_rule_finds_the_value_after_each_queried_key() -> None:
    # Pairs A->!, b->), 3->%; the queries b, A, 3 at 7, 9 and 11: their values at 8, 10, 12.
    assert answer_offsets("A!b)3%|b)A!3%") == [8, 10, 12]
    rng = random.Random(0)
    for num_pairs in (1, 5, 64):
        text = draw_example(rng, num_pairs=num_pairs)
        pairs, queries = _parse(text)
        offsets = answer_offsets(text)
        assert [text[offset - 1] + text[offset] for offset in offsets] == [
            k + v for k, v in queries
        ]
        assert all(text[offset] == dict(pairs)[text[offset - 1]] for offset in offsets)
        assert min(offsets) > text.index(SEPARATOR)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A!b)", r"'A!b\)' is not an MQAR example: it must be key-value pairs, '\|'"),
        ("A!|", "it must be key-value pairs"),
        ("A!b|A!", "it must be key-value pairs"),
        ("A!|A!b", "it must be key-value pairs"),
        ("A!A)|A!", r"the pair 'A\)' at character 2 is not a new key"),
        ("!A|!A", r"the pair '!A' at character 0 is not a new key"),
        ("A!|B!", r"the query 'B!' at character 3 is not one of its pairs"),
        ("A!|A)", r"the query 'A\)' at character 3 is not one of its pairs"),
        ("A!|A!|A", r"the query '\|A' at character 5 is not one of its pairs"),
        ("A!B)|A!|)", r"the query '\|\)' at character 7 is not one of its pairs"),
    ],
)
def test_a_text_that_is_not_mqar_has_no_answers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        answer_offsets(text)


def test_splits_are_the_same_for_a_seed_and_held_out_examples_are_unseen() -> None:
    splits = _splits()
    assert splits == _splits()
    assert splits["validation"] != _splits(seed=8)["validation"]
    assert [len(texts) for texts in splits.values()] == [300, 50, 50]
    held_out = splits["validation"] + splits["test"]
    assert len(set(held_out)) == len(held_out)
    assert not set(held_out) & set(splits["train"])


def test_the_pairs_are_drawn_in_min_len_to_max_len() -> None:
    counts = {len(_parse(text)[0]) for texts in _splits().values() for text in texts}
    assert counts == {2, 3, 4, 5, 6}
    only = _splits(min_pairs=64, max_pairs=64, train_size=5, validation_size=2, test_size=2)
    assert {len(text) for texts in only.values() for text in texts} == {255}


def test_null_sizes_take_the_defaults() -> None:
    made = mqar_splits(
        train_size=None, validation_size=None, test_size=None, min_pairs=8, max_pairs=8, seed=0
    )
    assert {split: len(made[split]) for split in made} == {
        "train": 10_000,
        "validation": 500,
        "test": 500,
    }


def test_the_builtin_entry_reads_the_pairs_from_min_len_and_max_len() -> None:
    dataset = builtin_dataset("mqar")
    assert dataset.fields == (TEXT,) and dataset.reads == ("min_len", "max_len")
    cfg = DataConfig(
        builtin="mqar", train_size=20, validation_size=5, test_size=5, min_len=3, max_len=3
    )
    made = dataset.make(cfg, 1)
    assert all(len(_parse(text)[0]) == 3 for text in made["train"][TEXT])
    # A generator setting MQAR does not read, typed, is refused rather than ignored.
    with pytest.raises(
        ValueError, match=r"data\.num_symbols=5 is read only by the generated datasets"
    ):
        check_data_source(DataConfig(builtin="mqar", num_symbols=5), ["data.num_symbols=5"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_pairs": 0}, r"data\.min_len=0 must be at least 1 \(MQAR: the fewest pairs\)"),
        (
            {"min_pairs": 5, "max_pairs": 4},
            r"data\.max_len=4 \(MQAR: the most pairs\) must be in data\.min_len=5\.\.64",
        ),
        (
            {"max_pairs": 65},
            r"data\.max_len=65 \(MQAR: the most pairs\) must be in data\.min_len=2\.\.64 \(the keys there are\)",
        ),
        ({"test_size": -1}, r"data\.test_size=-1 must be non-negative"),
        # One pair: 64 keys times 25 values, all drawn in train; none is left to hold out.
        (
            {"min_pairs": 1, "max_pairs": 1, "train_size": 20_000},
            r"MQAR drew only \d+ of data\.validation_size=50 validation examples unseen in the "
            r"earlier splits with data\.min_len=1 to data\.max_len=1 pairs: raise data\.max_len",
        ),
    ],
)
def test_bad_settings_are_refused_with_one_error(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _splits(**overrides)
