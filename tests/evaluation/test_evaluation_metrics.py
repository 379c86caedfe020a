"""Metrics against hand-computed values and sacrebleu's own command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.evaluation import METRICS, get_metric
from seq2seq.evaluation.metrics import bleu, cer, wer

HYPOTHESES = [
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dog",
    "hello world",
    "this is a small test of the metric",
]
REFERENCES_1 = [
    "the cat sat on a mat",
    "the quick brown fox jumped over the lazy dog",
    "hello there world",
    "this is a tiny test of the metric",
]
REFERENCES_2 = [
    "a cat sat on the mat",
    "a fast brown fox jumps over a lazy dog",
    "hello world !",
    "this is just a small test for the metric",
]


REFERENCE_METRICS = sorted(name for name, metric in METRICS.items() if metric.needs_references)
"""The metrics that compare with references (the rules, `dyck`: tests/evaluation/test_labels.py)."""


@pytest.mark.parametrize("name", REFERENCE_METRICS)
def test_perfect_hypotheses_get_the_best_score(name: str) -> None:
    metric = get_metric(name)
    refs = [[ref] for ref in REFERENCES_1]
    best = 100.0 if metric.higher_is_better else 0.0
    assert metric(REFERENCES_1, refs) == pytest.approx(best)


@pytest.mark.parametrize("name", REFERENCE_METRICS)
def test_every_metric_rejects_a_malformed_corpus(name: str) -> None:
    metric = get_metric(name)
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        metric(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty corpus"):
        metric([], [])
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        metric(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match=r"references\[0\] is the string 'a'"):
        metric(["a"], ["a"])


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'blue'; valid metrics: accuracy, bleu"):
        get_metric("blue")


def test_direction_of_each_metric() -> None:
    higher = {name for name, metric in METRICS.items() if metric.higher_is_better}
    assert higher == {"bleu", "chrf", "exact_match", "accuracy", "f1", "dyck", "mqar"}
    assert all(metric.name == name for name, metric in METRICS.items())


def test_wer_uses_the_closest_reference_for_edits_and_length() -> None:
    hypotheses = ["a b c d", "p"]
    references = [
        ["x y z w", "a b c"],  # 4 edits / 4 tokens, or 1 edit (insert d) / 3 tokens: closest
        ["p q r s"],  # 3 deletions / 4 tokens
    ]
    assert wer(hypotheses, references) == pytest.approx(100 * (1 + 3) / (3 + 4))


def test_wer_on_phonemes_is_the_phoneme_error_rate() -> None:
    hypotheses = ["HH AH L OW", "W ER L D"]
    references = [["HH EH L OW"], ["W ER L D Z"]]
    # one substitution, one deletion, over 4 + 5 reference phonemes
    assert wer(hypotheses, references) == pytest.approx(100 * 2 / 9)
    assert get_metric("per")(hypotheses, references) == wer(hypotheses, references)


def test_wer_splits_on_any_whitespace() -> None:
    assert wer(["a  b\tc"], [["a b c"]]) == 0.0


def test_wer_can_exceed_100_and_refuses_empty_references() -> None:
    assert wer(["a b c"], [["x"]]) == pytest.approx(300.0)
    with pytest.raises(ValueError, match="token error rate is undefined"):
        wer(["a"], [[""]])


def test_cer_counts_characters_including_spaces() -> None:
    assert cer(["abd", "a c"], [["abc"], ["a b c"]]) == pytest.approx(100 * (1 + 2) / (3 + 5))


def test_ser_exact_match_and_accuracy() -> None:
    hypotheses = ["a", "b", "c", "d"]
    references = [["a"], ["x", "b"], ["y"], ["d", "z"]]
    assert get_metric("ser")(hypotheses, references) == pytest.approx(25.0)  # only "c" misses
    assert get_metric("exact_match")(hypotheses, references) == pytest.approx(75.0)
    # accuracy looks at the first reference only: "b" != "x"
    assert get_metric("accuracy")(hypotheses, references) == pytest.approx(50.0)


def sacrebleu_cli(tmp_path: Path, metric: str, *extra: str) -> float:
    """Score HYPOTHESES against both reference files with sacrebleu's own CLI."""
    hyp = tmp_path / "hyp.txt"
    ref_1 = tmp_path / "ref1.txt"
    ref_2 = tmp_path / "ref2.txt"
    for path, lines in ((hyp, HYPOTHESES), (ref_1, REFERENCES_1), (ref_2, REFERENCES_2)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    executable = shutil.which("sacrebleu", path=str(Path(sys.executable).parent)) or "sacrebleu"
    command = [executable, str(ref_1), str(ref_2), "-i", str(hyp), "-m", metric, *extra]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(json.loads(output)["score"])


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_sacrebleu_metrics_match_sacrebleus_cli(tmp_path: Path, name: str) -> None:
    expected = sacrebleu_cli(tmp_path, name, "--width", "6")
    references = [[r1, r2] for r1, r2 in zip(REFERENCES_1, REFERENCES_2, strict=True)]
    assert get_metric(name)(HYPOTHESES, references) == pytest.approx(expected, abs=1e-5)
    # reference order does not matter
    swapped = [[r2, r1] for r1, r2 in references]
    assert get_metric(name)(HYPOTHESES, swapped) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_examples_may_have_different_numbers_of_references(name: str) -> None:
    # Repeating an example's only reference adds nothing, so padding the shorter lists
    # must not change the score either.
    metric = get_metric(name)
    hypotheses = ["hello world", "the cat sat on the mat"]
    uneven = [["hello there big world again"], ["the cat sat on a mat", "a cat sat on the mat"]]
    repeated = [uneven[0] * 2, uneven[1]]
    assert metric(hypotheses, uneven) == pytest.approx(metric(hypotheses, repeated))


def test_bleu_pads_missing_references_with_nothing_rather_than_an_empty_string() -> None:
    # An empty reference would be the closest length to the 2-token hypothesis, which
    # removes most of its brevity penalty.
    hypotheses = ["hello world", "the cat sat on the mat"]
    uneven = [["hello there big world again"], ["the cat sat on a mat", "a cat sat on the mat"]]
    padded_with_empty = [[*uneven[0], ""], uneven[1]]
    assert bleu(hypotheses, uneven) < bleu(hypotheses, padded_with_empty) - 10
