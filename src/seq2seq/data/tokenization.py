"""Tokenizers for a training split (from the cache when it has them) and tokenized splits."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

import datasets

from seq2seq.data.columns import SOURCE, TARGET
from seq2seq.tokenizer.base import Tokenizer
from seq2seq.tokenizer.byte import ByteTokenizer
from seq2seq.tokenizer.cache import cache_key, load_or_train
from seq2seq.tokenizer.sentencepiece import ModelType

BYTE = "byte"
"""The untrained byte tokenizer's model type; the others are SentencePiece's."""

# The SentencePiece models whose vocab_size is the size asked for; `char` and `word` have
# one piece per character or word of the text, so theirs is a ceiling.
_SIZED_MODELS = ("unigram", "bpe")

log = logging.getLogger(__name__)

# Part of the tokenized splits' fingerprints: bump it when tokenization changes.
_TOKENIZE_VERSION = 1
_TEXT_BATCH = 1024


def _require_columns(ds: datasets.Dataset, columns: Sequence[str], *, split: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"split {split!r} has no {missing} column(s) (columns: {ds.column_names}); "
            "load it with seq2seq.data.loading.load_splits or a built-in task"
        )


def _texts(ds: datasets.Dataset, columns: list[str]) -> Callable[[], Iterator[str]]:
    """A fresh iterator over the non-missing texts of `columns`, batch by batch."""

    def texts() -> Iterator[str]:
        for batch in ds.select_columns(columns).iter(batch_size=_TEXT_BATCH):
            for column in columns:
                yield from (text for text in batch[column] if text is not None)

    return texts


def build_tokenizer(
    train: datasets.Dataset,
    columns: Sequence[str],
    *,
    model_type: str,
    vocab_size: int,
    character_coverage: float,
    cache_dir: Path,
) -> Tokenizer:
    """A tokenizer of `model_type` for the texts of `train`'s `columns`: the byte
    tokenizer, or a SentencePiece model trained on them, cached under a key made of
    `train`'s fingerprint, the columns and the settings (the same data and settings reuse
    the model of an earlier run). A unigram or bpe model that the texts cannot fill to
    `vocab_size` is smaller, with a warning."""
    _require_columns(train, columns, split="train")
    if model_type == BYTE:
        return ByteTokenizer()
    settings = {
        "model_type": str(model_type),
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "columns": list(columns),
    }
    key = cache_key(data_fingerprint=train._fingerprint, settings=settings)
    tokenizer, _ = load_or_train(
        cache_dir=cache_dir,
        key=key,
        texts_fn=_texts(train, list(columns)),
        model_type=cast(ModelType, str(model_type)),
        vocab_size=vocab_size,
        character_coverage=character_coverage,
    )
    # Said whether trained now or taken from the cache: each run's log tells its size.
    if str(model_type) in _SIZED_MODELS and tokenizer.vocab_size < vocab_size:
        log.warning(
            "tokenizer.vocab_size=%d is more than the train split gives: its texts (%s) make "
            "only %d %s pieces (specials included), so the tokenizer and the model have %d; set "
            "tokenizer.vocab_size=%d or less to ask for that size",
            vocab_size,
            " and ".join(columns),
            tokenizer.vocab_size,
            str(model_type),
            tokenizer.vocab_size,
            tokenizer.vocab_size,
        )
    return tokenizer


def build_tokenizers(
    train: datasets.Dataset,
    *,
    shared: bool,
    model_type: str,
    vocab_size: int,
    character_coverage: float,
    cache_dir: Path,
    source_model_type: str | None = None,
) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers for `train`'s `source` and `target` columns; one object
    trained on both if `shared`. `source_model_type`: the source side's model type when
    not shared (default `model_type`)."""
    settings = {
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "cache_dir": cache_dir,
    }
    if shared:
        both = build_tokenizer(train, [SOURCE, TARGET], model_type=model_type, **settings)  # type: ignore[arg-type]
        return both, both
    source = build_tokenizer(
        train,
        [SOURCE],
        model_type=source_model_type or model_type,
        **settings,  # type: ignore[arg-type]
    )
    return source, build_tokenizer(train, [TARGET], model_type=model_type, **settings)  # type: ignore[arg-type]


def ids_column(column: str) -> str:
    """Where `tokenize_columns` puts the ids of `column` (`source` -> `source_ids`)."""
    return f"{column}_ids"


def tokenize_columns(
    dsd: datasets.DatasetDict, tokenizers: Mapping[str, Tokenizer]
) -> datasets.DatasetDict:
    """Adds `<column>_ids` (int32 ids, no bos/eos) for every `column: tokenizer` to every
    split. A missing text encodes as no ids (cleaning drops or counts it). The result's
    fingerprint derives from the input's and the tokenizers', so splits loaded from files
    reuse the tokenized cache of an earlier run with the same tokenizers."""
    ids = datasets.Sequence(datasets.Value("int32"))
    columns = list(tokenizers)
    key = "/".join(tokenizers[column].fingerprint for column in columns)

    def encode(*texts: list[str | None]) -> dict[str, list[list[int]]]:
        return {
            ids_column(column): tokenizers[column].encode_batch([t or "" for t in column_texts])
            for column, column_texts in zip(columns, texts, strict=True)
        }

    result = {}
    for split, ds in dsd.items():
        _require_columns(ds, columns, split=split)
        fingerprint = hashlib.sha256(
            f"{ds._fingerprint}/{key}/{_TOKENIZE_VERSION}".encode()
        ).hexdigest()[:32]
        features = ds.features.copy()
        for column in columns:
            features[ids_column(column)] = ids
        result[split] = ds.map(
            encode,
            batched=True,
            input_columns=columns,
            features=features,
            new_fingerprint=fingerprint,
            desc=f"tokenizing {split}",
        )
    return datasets.DatasetDict(result)


def tokenize_splits(
    dsd: datasets.DatasetDict, src_tok: Tokenizer, tgt_tok: Tokenizer
) -> datasets.DatasetDict:
    """Adds `source_ids` and `target_ids` (int32 ids, no bos/eos) to every split."""
    return tokenize_columns(dsd, {SOURCE: src_tok, TARGET: tgt_tok})
