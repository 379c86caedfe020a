from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import pytest

from seq2seq.data.generated import generate_splits
from seq2seq.data.loading import load_splits
from seq2seq.data.tokenization import build_tokenizers, tokenize_splits
from seq2seq.tokenizer.sentencepiece import UNK_ID
from seq2seq.tokenizer.sentencepiece import SentencePieceTokenizer as Tokenizer

SETTINGS = {"model_type": "char", "vocab_size": 40, "character_coverage": 1.0}


def _addition() -> datasets.DatasetDict:
    return generate_splits(
        "addition",
        train_size=60,
        validation_size=10,
        test_size=10,
        min_len=1,
        max_len=3,
        num_symbols=0,
        seed=0,
    )


def test_shared_gives_one_tokenizer_for_both_sides(tmp_path: Path) -> None:
    src, tgt = build_tokenizers(_addition()["train"], shared=True, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
    assert src is tgt
    assert UNK_ID not in src.encode("12+34")


def test_separate_tokenizers_learn_their_own_side(tmp_path: Path) -> None:
    src, tgt = build_tokenizers(_addition()["train"], shared=False, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
    assert src is not tgt
    assert UNK_ID not in src.encode("+")
    assert UNK_ID in tgt.encode("+")  # targets are sums: no '+'


def test_a_second_build_reuses_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = _addition()["train"]
    first = build_tokenizers(train, shared=False, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="seq2seq.tokenizer.cache"):
        second = build_tokenizers(train, shared=False, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
    assert caplog.text.count("reusing cached tokenizer") == 2
    assert [t.fingerprint for t in first] == [t.fingerprint for t in second]
    build_tokenizers(train, shared=False, cache_dir=tmp_path, **{**SETTINGS, "vocab_size": 41})  # type: ignore[arg-type]
    assert len(list(tmp_path.iterdir())) == 4  # separate keys for other settings


def test_tokenize_splits_adds_ids_that_decode_back(tmp_path: Path) -> None:
    dsd = _addition()
    src, tgt = build_tokenizers(dsd["train"], shared=False, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
    tokenized = tokenize_splits(dsd, src, tgt)
    for split, ds in tokenized.items():
        assert ds.column_names == ["source", "target", "source_ids", "target_ids"]
        assert ds.features["source_ids"] == datasets.Sequence(datasets.Value("int32"))
        row = ds[0]
        assert src.decode(row["source_ids"]) == dsd[split][0]["source"]
        assert tgt.decode(row["target_ids"]) == dsd[split][0]["target"]


def _from_files(tmp_path: Path) -> datasets.DatasetDict:
    path = tmp_path / "train.jsonl"
    if not path.exists():
        rows = [{"source": w, "target": w[::-1]} for w in ["abc", "hello", "seq", "token"]]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_splits(
        path="json",
        name=None,
        data_files={"train": str(path)},
        splits={"train": "train"},
        columns={"source": "source", "target": "target"},
    )


def test_tokenized_splits_from_files_are_cached_across_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsd = _from_files(tmp_path)
    src, tgt = build_tokenizers(dsd["train"], shared=True, cache_dir=tmp_path / "tok", **SETTINGS)  # type: ignore[arg-type]
    first = tokenize_splits(dsd, src, tgt)

    # A later run: same files, same tokenizer from the cache; encoding must not run again.
    def no_encoding(self: Tokenizer, texts: list[str]) -> list[list[int]]:
        raise AssertionError("tokenized again instead of reusing the cache")

    monkeypatch.setattr(Tokenizer, "encode_batch", no_encoding)
    again_src, again_tgt = build_tokenizers(
        _from_files(tmp_path)["train"],
        shared=True,
        cache_dir=tmp_path / "tok",
        **SETTINGS,  # type: ignore[arg-type]
    )
    second = tokenize_splits(_from_files(tmp_path), again_src, again_tgt)
    assert second["train"]._fingerprint == first["train"]._fingerprint
    assert second["train"]["source_ids"] == first["train"]["source_ids"]


def test_tokenizing_needs_text_columns(tmp_path: Path) -> None:
    train = datasets.Dataset.from_dict({"src": ["a"], "tgt": ["b"]})
    with pytest.raises(ValueError, match=r"no \['source', 'target'\] column"):
        build_tokenizers(train, shared=True, cache_dir=tmp_path, **SETTINGS)  # type: ignore[arg-type]
