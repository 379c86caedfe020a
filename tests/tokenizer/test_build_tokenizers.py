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


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_a_vocab_size_the_data_cannot_fill_is_one_warning_with_both_sizes(
    model_type: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The smaller vocabulary was told only in the INFO line of the training; now a warning
    names the setting, the size asked and the size used, when the tokenizer is trained and
    again when a later run takes it from the cache (each run's log says what it used)."""
    train = _addition()["train"]
    settings = {**SETTINGS, "model_type": model_type, "vocab_size": 1000}
    for _ in ("trained", "cached"):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            src, tgt = build_tokenizers(train, shared=False, cache_dir=tmp_path, **settings)  # type: ignore[arg-type]
        assert 4 < src.vocab_size < 1000 and 4 < tgt.vocab_size < 1000
        assert _warnings(caplog) == [
            f"tokenizer.vocab_size=1000 is more than the train split gives: its texts ({side}) "
            f"make only {tok.vocab_size} {model_type} pieces (specials included), so the "
            f"tokenizer and the model have {tok.vocab_size}; set tokenizer.vocab_size="
            f"{tok.vocab_size} or less to ask for that size"
            for side, tok in (("source", src), ("target", tgt))
        ]


def test_a_shared_vocabulary_names_both_sides(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        tok, _ = build_tokenizers(
            _addition()["train"],
            shared=True,
            cache_dir=tmp_path,
            **{**SETTINGS, "model_type": "bpe", "vocab_size": 1000},  # type: ignore[arg-type]
        )
    assert len(_warnings(caplog)) == 1
    assert f"its texts (source and target) make only {tok.vocab_size} bpe pieces" in caplog.text


@pytest.mark.parametrize(
    ("model_type", "vocab_size"), [("char", 1000), ("word", 1000), ("bpe", 40), ("unigram", 40)]
)
def test_a_ceiling_on_characters_or_words_or_a_filled_size_is_no_warning(
    model_type: str, vocab_size: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`char` and `word` have one piece per character or word of the text: their size is a
    ceiling (the shipped experiments set one well above it), not a size asked for."""
    settings = {**SETTINGS, "model_type": model_type, "vocab_size": vocab_size}
    with caplog.at_level(logging.INFO):
        tok, _ = build_tokenizers(_addition()["train"], shared=True, cache_dir=tmp_path, **settings)  # type: ignore[arg-type]
    assert tok.vocab_size <= vocab_size
    assert _warnings(caplog) == []
