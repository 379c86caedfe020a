from __future__ import annotations

import logging
import string
from collections import Counter

import pytest

from seq2seq.data.generated import GENERATORS, generate_examples, generate_splits, is_balanced

SETTINGS = {"min_len": 2, "max_len": 6, "num_symbols": 5}


def _rows(name: str, *, seed: int = 0, n: int = 200, **settings: int) -> list[tuple[str, ...]]:
    ds = generate_examples(name, num_examples=n, seed=seed, **{**SETTINGS, **settings})
    assert tuple(ds.column_names) == GENERATORS[name].fields
    return list(zip(*(ds[field] for field in GENERATORS[name].fields), strict=True))


def _pairs(name: str, *, seed: int = 0, n: int = 200, **settings: int) -> list[tuple[str, str]]:
    return [(source, target) for source, target in _rows(name, seed=seed, n=n, **settings)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("reverse", lambda s: s[::-1]),
        ("copy", lambda s: s),
        ("sort", lambda s: "".join(sorted(s))),
    ],
)
def test_symbol_tasks_are_correct(name: str, expected: object) -> None:
    pairs = _pairs(name)
    for source, target in pairs:
        assert 2 <= len(source) <= 6
        assert set(source) <= set(string.ascii_lowercase[:5])
        assert target == expected(source)  # type: ignore[operator]
    assert {len(s) for s, _ in pairs} == set(range(2, 7))


def test_addition_is_correct_with_exact_digit_counts() -> None:
    # num_symbols is ignored by addition, even out of the letters' range.
    pairs = _pairs("addition", min_len=1, max_len=3, num_symbols=99)
    for source, target in pairs:
        a, b = source.split("+")
        assert all(1 <= len(x) <= 3 and (x == "0" or not x.startswith("0")) for x in (a, b))
        assert int(target) == int(a) + int(b)
        assert target == str(int(a) + int(b))


def test_majority_labels_the_one_most_frequent_letter() -> None:
    rows = _rows("majority", n=500)
    for text, label in rows:
        counts = Counter(text)
        assert 2 <= len(text) <= 6 and set(text) <= set(string.ascii_lowercase[:5])
        assert counts[label] > max([0, *(n for letter, n in counts.items() if letter != label)])
    # Every letter wins sometimes: the classes are all there.
    assert {label for _, label in rows} == set(string.ascii_lowercase[:5])


def test_dyck_draws_balanced_strings_and_the_rule_rejects_the_rest() -> None:
    texts = [text for (text,) in _rows("dyck", n=300, min_len=2, max_len=12)]
    assert all(is_balanced(text) and 2 <= len(text) <= 12 for text in texts)
    assert len(set(texts)) > 100 and any("[" in t for t in texts) and any("(" in t for t in texts)
    for bad in ["", "(", ")(", "([)]", "(]", "(()", "ab", "()x"]:
        assert not is_balanced(bad), bad
    for good in ["()", "[]", "([])", "()[]([()])"]:
        assert is_balanced(good), good


def test_brackets_classes_hold_the_same_brackets_and_differ_in_order() -> None:
    rows = _rows("brackets", n=400, min_len=4, max_len=12)
    labels = Counter(label for _, label in rows)
    assert set(labels) == {"balanced", "unbalanced"} and min(labels.values()) > 150
    for text, label in rows:
        assert is_balanced(text) == (label == "balanced")
        assert text.count("(") == text.count(")") and text.count("[") == text.count("]")


def test_registry_holds_each_kind_of_task() -> None:
    assert {name: task.fields for name, task in GENERATORS.items()} == {
        "addition": ("source", "target"),
        "copy": ("source", "target"),
        "reverse": ("source", "target"),
        "sort": ("source", "target"),
        "majority": ("text", "label"),
        "brackets": ("text", "label"),
        "dyck": ("text",),
    }


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_data_and_other_seed_other_data(name: str) -> None:
    assert _rows(name, seed=3) == _rows(name, seed=3)
    assert _rows(name, seed=3) != _rows(name, seed=4)


def test_unknown_task_lists_the_valid_names() -> None:
    with pytest.raises(
        ValueError, match=r"data.builtin='revrese'.*\['addition', 'brackets', 'copy'"
    ):
        generate_examples("revrese", num_examples=1, seed=0, **SETTINGS)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"num_symbols": 27}, "data.num_symbols=27"),
        ({"num_symbols": 0}, "data.num_symbols=0"),
        ({"min_len": 0}, "data.min_len=0"),
        ({"min_len": 5, "max_len": 4}, "data.max_len=4"),
    ],
)
def test_bad_settings_name_the_field(settings: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate_examples("reverse", num_examples=1, seed=0, **{**SETTINGS, **settings})


def test_splits_are_sized_deterministic_and_disjoint() -> None:
    kwargs = {"train_size": 300, "validation_size": 50, "test_size": 40, **SETTINGS}
    dsd = generate_splits("reverse", seed=7, **kwargs)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 300, "validation": 50, "test": 40}
    train, validation, test = (set(dsd[s]["source"]) for s in ("train", "validation", "test"))
    assert not train & validation
    assert not train & test
    assert not validation & test
    assert len(validation) == 50 and len(test) == 40
    again = generate_splits("reverse", seed=7, **kwargs)
    for split in dsd:
        assert dsd[split]["source"] == again[split]["source"]
    assert generate_splits("reverse", seed=8, **kwargs)["train"]["source"] != dsd["train"]["source"]


def test_a_space_too_small_for_disjoint_splits_warns_and_still_fills_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two possible sources ("a", "b"), both in train.
    with caplog.at_level(logging.WARNING):
        dsd = generate_splits(
            "copy",
            train_size=50,
            validation_size=5,
            test_size=5,
            min_len=1,
            max_len=1,
            num_symbols=2,
            seed=0,
        )
    assert len(dsd["validation"]) == 5 and len(dsd["test"]) == 5
    assert "unseen" in caplog.text
