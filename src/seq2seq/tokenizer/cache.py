"""A tokenizer cache keyed by the training data and the settings, written atomically.

An entry is a directory `<cache_dir>/<key>/` holding `spm.model`, `spm.vocab` and
`settings.json`. It is trained in a hidden sibling directory and renamed into place,
so a crash leaves no entry (only a hidden `.*.tmp` directory, never read) and
concurrent runs (DDP ranks) never see a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from seq2seq.tokenizer.sentencepiece import ModelType, SentencePieceTokenizer, train_tokenizer

logger = logging.getLogger(__name__)

# Part of every key: bump it when training changes, so that old entries are not reused.
CACHE_FORMAT = 1
MODEL_PREFIX = "spm"


def cache_key(*, data_fingerprint: str, settings: dict[str, Any]) -> str:
    """sha256 (hex) of the data fingerprint and JSON-serializable settings."""
    try:
        payload = json.dumps(
            {"format": CACHE_FORMAT, "data": data_fingerprint, "settings": settings},
            sort_keys=True,
            separators=(",", ":"),
        )
    except TypeError as error:
        raise ValueError(f"tokenizer cache settings must be JSON values: {error}") from error
    return hashlib.sha256(payload.encode()).hexdigest()


def _fsync_tree(directory: Path) -> None:
    """Flushes the files of `directory` to disk, so the rename publishes complete files."""
    for file in directory.iterdir():
        with file.open("rb") as stream:
            os.fsync(stream.fileno())


def load_or_train(
    *,
    cache_dir: Path,
    key: str,
    texts_fn: Callable[[], Iterable[str]],
    model_type: ModelType,
    vocab_size: int,
    character_coverage: float,
) -> tuple[SentencePieceTokenizer, bool]:
    """The tokenizer cached under `key`, or one trained on `texts_fn()` and cached there.

    Returns `(tokenizer, reused)`; `texts_fn` is called only when training.
    """
    entry = Path(cache_dir) / key
    model = entry / f"{MODEL_PREFIX}.model"
    if model.is_file():
        logger.info("reusing cached tokenizer %s", model)
        return _load_entry(model), True

    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=entry.parent))
    try:
        start = time.perf_counter()
        tokenizer = train_tokenizer(
            texts_fn(),
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            output_dir=staging,
            prefix=MODEL_PREFIX,
        )
        settings = {
            "model_type": model_type,
            "vocab_size": vocab_size,
            "character_coverage": character_coverage,
            "trained_vocab_size": tokenizer.vocab_size,
        }
        (staging / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        _fsync_tree(staging)
        try:
            os.rename(staging, entry)
        except OSError:
            if not model.is_file():
                raise
            # Another process published the same key first; its model is as good as ours.
            logger.info("reusing tokenizer %s, cached meanwhile by another process", model)
            return _load_entry(model), False
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "trained tokenizer %s (%s, %d pieces) in %.1f s",
        model,
        model_type,
        tokenizer.vocab_size,
        time.perf_counter() - start,
    )
    return tokenizer, False


def _load_entry(model: Path) -> SentencePieceTokenizer:
    try:
        return SentencePieceTokenizer.load(model)
    except (OSError, RuntimeError, ValueError) as error:
        raise ValueError(
            f"cached tokenizer {model} is unreadable ({error}); delete {model.parent} to retrain"
        ) from error
