"""Tokenizers for a training split (from the cache when it has them) and tokenized splits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets

from seq2seq.data.columns import SOURCE, SOURCE_IDS, TARGET, TARGET_IDS
from seq2seq.tokenizer.cache import cache_key, load_or_train
from seq2seq.tokenizer.sentencepiece import ModelType, Tokenizer

# Part of the tokenized splits' fingerprints: bump it when tokenization changes.
_TOKENIZE_VERSION = 1
_TEXT_BATCH = 1024


def _require_text_columns(ds: datasets.Dataset, *, split: str) -> None:
    missing = [c for c in (SOURCE, TARGET) if c not in ds.column_names]
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


def build_tokenizers(
    train: datasets.Dataset,
    *,
    shared: bool,
    model_type: ModelType,
    vocab_size: int,
    character_coverage: float,
    cache_dir: Path,
    source_model_type: ModelType | None = None,
) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers trained on `train`'s text columns; one object if `shared`.
    `source_model_type`: the source side's model type when not shared (default `model_type`).

    Each is cached under a key made of `train`'s fingerprint, the columns it reads and
    the settings, so the same data and settings reuse the model of an earlier run.
    """
    _require_text_columns(train, split="train")

    def tokenizer(columns: list[str], kind: ModelType) -> Tokenizer:
        settings = {
            "model_type": str(kind),
            "vocab_size": vocab_size,
            "character_coverage": character_coverage,
            "columns": columns,
        }
        key = cache_key(data_fingerprint=train._fingerprint, settings=settings)
        tok, _ = load_or_train(
            cache_dir=cache_dir,
            key=key,
            texts_fn=_texts(train, columns),
            model_type=kind,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
        )
        return tok

    if shared:
        both = tokenizer([SOURCE, TARGET], model_type)
        return both, both
    return tokenizer([SOURCE], source_model_type or model_type), tokenizer([TARGET], model_type)


def _encoder(
    source_tokenizer: Tokenizer, target_tokenizer: Tokenizer
) -> Callable[[list[str | None], list[str | None]], dict[str, list[list[int]]]]:
    def encode(sources: list[str | None], targets: list[str | None]) -> dict[str, list[list[int]]]:
        return {
            SOURCE_IDS: source_tokenizer.encode_batch([s or "" for s in sources]),
            TARGET_IDS: target_tokenizer.encode_batch([t or "" for t in targets]),
        }

    return encode


def tokenize_splits(
    dsd: datasets.DatasetDict, src_tok: Tokenizer, tgt_tok: Tokenizer
) -> datasets.DatasetDict:
    """Adds `source_ids` and `target_ids` (int32 ids, no bos/eos) to every split.

    A missing text encodes as no ids (and `clean_split` drops it). The result's
    fingerprint derives from the input's and the two models', so splits loaded from
    files reuse the tokenized cache of an earlier run with the same tokenizers.
    """
    ids = datasets.Sequence(datasets.Value("int32"))
    result = {}
    for split, ds in dsd.items():
        _require_text_columns(ds, split=split)
        fingerprint = hashlib.sha256(
            f"{ds._fingerprint}/{src_tok.fingerprint}/{tgt_tok.fingerprint}/"
            f"{_TOKENIZE_VERSION}".encode()
        ).hexdigest()[:32]
        features = ds.features.copy()
        features[SOURCE_IDS] = ids
        features[TARGET_IDS] = ids
        result[split] = ds.map(
            _encoder(src_tok, tgt_tok),
            batched=True,
            input_columns=[SOURCE, TARGET],
            features=features,
            new_fingerprint=fingerprint,
            desc=f"tokenizing {split}",
        )
    return datasets.DatasetDict(result)
