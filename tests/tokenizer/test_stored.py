"""Tokenizers stored in a checkpoint as byte tensors, and the errors for ones that are not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.tokenizer import train_tokenizer
from seq2seq.tokenizer.stored import CHECKPOINT_KEY, stored_tokenizers, tokenizer_tensors


def test_round_trip_and_a_corrupt_model_named_with_its_side_and_checkpoint(tmp_path: Path) -> None:
    source = train_tokenizer(
        ["a b c", "c b a"], model_type="char", vocab_size=20, output_dir=tmp_path, prefix="s"
    )
    target = train_tokenizer(
        ["X Y", "Y X"], model_type="char", vocab_size=20, output_dir=tmp_path, prefix="t"
    )
    checkpoint = {CHECKPOINT_KEY: tokenizer_tensors(source, target)}
    loaded = stored_tokenizers(checkpoint, tmp_path / "step_1.pt")
    assert [t.fingerprint for t in loaded] == [source.fingerprint, target.fingerprint]
    checkpoint[CHECKPOINT_KEY]["target"] = torch.arange(40, dtype=torch.uint8)
    with pytest.raises(
        ValueError, match=r"checkpoint .*step_1\.pt: its stored target tokenizer is corrupt"
    ):
        stored_tokenizers(checkpoint, tmp_path / "step_1.pt")
