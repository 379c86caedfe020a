"""score() over several metrics and the text table."""

from __future__ import annotations

import pytest

from seq2seq.evaluation import format_table, get_metric, score


def test_score_computes_each_metric_in_order() -> None:
    hypotheses = ["a b c", "d e"]
    references = [["a b c"], ["d f"]]
    scores = score(hypotheses, references, ["wer", "exact_match", "bleu"])
    assert list(scores) == ["wer", "exact_match", "bleu"]
    assert scores["wer"] == pytest.approx(100 * 1 / 5)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["bleu"] == pytest.approx(get_metric("bleu")(hypotheses, references))


def test_score_checks_every_name_before_scoring() -> None:
    with pytest.raises(ValueError, match="unknown metric 'wr'"):
        score(["a"], [["a"]], ["bleu", "wr"])
    with pytest.raises(ValueError, match="no metrics requested"):
        score(["a"], [["a"]], [])
    with pytest.raises(ValueError, match="must be a list of names"):
        score(["a"], [["a"]], "bleu")


def test_format_table_aligns_names_and_values() -> None:
    table = format_table({"bleu": 34.5678, "exact_match": 100.0, "wer": 5.0})
    assert table == (
        "metric        score\nbleu          34.57\nexact_match  100.00\nwer            5.00"
    )
