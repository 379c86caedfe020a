from __future__ import annotations

import datasets
import pytest

from seq2seq.data.cleaning import clean_split


def _split() -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "source": ["ok", "no source", "no target", "long source", "long target", "ok2"],
            "source_ids": [[5, 6], [], [5], [5, 6, 7, 8, 9], [5], [7]],
            "target_ids": [[6], [6], [], [6], [6, 7, 8, 9], [8, 9, 10]],
        }
    )


def test_drop_counts_empty_and_overlong_examples() -> None:
    cleaned, report = clean_split(_split(), max_source_len=3, max_target_len=3, overlong="drop")
    assert cleaned["source"] == ["ok", "ok2"]
    assert (report.total, report.dropped_empty, report.dropped_overlong, report.truncated) == (
        6,
        2,
        2,
        0,
    )
    assert report.kept == 2
    assert str(report) == (
        "kept 2/6 examples; dropped 2 empty; dropped 2 over-long (source > 3 or target > 3 tokens)"
    )


def test_truncate_keeps_the_first_ids_and_counts_them() -> None:
    cleaned, report = clean_split(_split(), max_source_len=3, max_target_len=3, overlong="truncate")
    assert cleaned["source"] == ["ok", "long source", "long target", "ok2"]
    assert cleaned["source_ids"] == [[5, 6], [5, 6, 7], [5], [7]]
    assert cleaned["target_ids"] == [[6], [6], [6, 7, 8], [8, 9, 10]]
    assert (report.dropped_empty, report.dropped_overlong, report.truncated, report.kept) == (
        2,
        0,
        2,
        4,
    )
    assert "truncated 2 over-long" in str(report)
    assert cleaned.features == _split().features


def test_a_clean_split_is_left_alone_and_keeps_its_format() -> None:
    ds = _split().select([0, 5]).with_format("numpy")
    cleaned, report = clean_split(ds, max_source_len=9, max_target_len=9, overlong="drop")
    assert report.kept == report.total == 2
    assert cleaned.format["type"] == "numpy"


def test_bad_arguments_name_the_field_and_choices() -> None:
    with pytest.raises(ValueError, match=r"data.overlong='cut'.*\['drop', 'truncate'\]"):
        clean_split(_split(), max_source_len=3, max_target_len=3, overlong="cut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data.max_target_len=0"):
        clean_split(_split(), max_source_len=3, max_target_len=0, overlong="drop")


def test_an_untokenized_split_is_refused() -> None:
    ds = datasets.Dataset.from_dict({"source": ["a"], "target": ["b"]})
    with pytest.raises(ValueError, match=r"source_ids.*tokenize_splits"):
        clean_split(ds, max_source_len=3, max_target_len=3, overlong="drop")
