"""Held-out splits as the evaluator scores them: one entry per source, normalized references."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest

from seq2seq.tasks.seq2seq_evaluation import evaluation_set
from seq2seq.tokenizer import train_tokenizer


def test_references_are_normalized_like_decoded_hypotheses_and_merged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    targets = ["HH AH  L OW ", " HH EH L OW", "HH  AH L OW", "\ufb01 X"]
    tokenizer = train_tokenizer(
        ["HH AH L OW", "HH EH L OW", "fi X"],
        model_type="char",
        vocab_size=40,
        output_dir=tmp_path,
        prefix="target",
    )
    split = datasets.Dataset.from_dict(
        {
            "source": ["hello", "hello", "hello", "fix"],
            "target": targets,
            "source_ids": [[4, 5], [4, 5], [4, 5], [6]],
            "target_ids": [tokenizer.encode(t) for t in targets],
        }
    )
    with caplog.at_level(logging.INFO):
        evaluation = evaluation_set(split, tokenizer, "test split")
    assert "test split: 2 of 4 examples repeat an earlier source" in caplog.text
    assert "(2 scored)" in caplog.text
    assert evaluation.sources == ["hello", "fix"]
    # The first and third targets differ only in spacing: one reference.
    assert evaluation.references == [["HH AH L OW", "HH EH L OW"], ["fi X"]]
    # A perfect hypothesis is the decoded target, which now equals its reference.
    assert [tokenizer.decode(tokenizer.encode(t)) for t in targets[::3]] == ["HH AH L OW", "fi X"]
