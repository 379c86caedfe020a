"""Label metrics against values computed by hand: per-class precision, recall and F1,
macro-F1 (the unweighted mean over the labels that occur), and the confusion matrix."""

from __future__ import annotations

import pytest

from seq2seq.evaluation import get_metric
from seq2seq.evaluation.labels import confusion, macro_f1, per_class

# References a a a b b c; predictions a a b b c c.
REFERENCES = ["a", "a", "a", "b", "b", "c"]
PREDICTIONS = ["a", "a", "b", "b", "c", "c"]


def test_per_class_figures_by_hand() -> None:
    figures = per_class(PREDICTIONS, REFERENCES)
    # a: tp 2, predicted 2, support 3 -> P 1, R 2/3, F1 0.8
    # b: tp 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
    # c: tp 1, predicted 2, support 1 -> P 1/2, R 1, F1 2/3
    assert figures["a"].precision == pytest.approx(100.0)
    assert figures["a"].recall == pytest.approx(200 / 3)
    assert figures["a"].f1 == pytest.approx(80.0)
    assert (figures["b"].precision, figures["b"].recall, figures["b"].f1) == pytest.approx(
        (50, 50, 50)
    )
    assert figures["c"].f1 == pytest.approx(200 / 3)
    assert [figures[label].support for label in "abc"] == [3, 2, 1]
    assert macro_f1(PREDICTIONS, REFERENCES) == pytest.approx((80 + 50 + 200 / 3) / 3)


def test_a_label_only_predicted_counts_in_the_macro_average() -> None:
    # scikit-learn's macro average runs over the labels of both sides: a never-right
    # prediction "x" is a class with F1 0.
    assert macro_f1(["a", "x"], ["a", "a"]) == pytest.approx((200 / 3 + 0) / 2)


def test_the_registered_metrics_score_label_files() -> None:
    references = [[label] for label in REFERENCES]
    assert get_metric("f1")(PREDICTIONS, references) == pytest.approx(
        macro_f1(PREDICTIONS, REFERENCES)
    )
    assert get_metric("accuracy")(PREDICTIONS, references) == pytest.approx(400 / 6)


def test_confusion_rows_are_references_and_columns_predictions() -> None:
    matrix = confusion(PREDICTIONS, REFERENCES, ["a", "b", "c"])
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_the_dyck_rule_needs_no_references() -> None:
    dyck = get_metric("dyck")
    assert not dyck.needs_references and dyck.higher_is_better
    assert dyck(["()", "([])", "(]", ""], [[""]] * 4) == pytest.approx(50.0)
