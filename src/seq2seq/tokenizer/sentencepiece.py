"""SentencePiece tokenizers with the fixed special ids, trained from in-memory text.

`encode` adds neither bos nor eos; the collators do. Text goes through SentencePiece's default `nmt_nfkc` normalization (NFKC,
runs of whitespace collapsed), so `decode(encode(x))` is the normalized `x`.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, get_args

import sentencepiece as spm

from seq2seq.atomic import write_bytes_atomic
from seq2seq.tokenizer.base import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_IDS,
    UNK_ID,
    Tokenizer,
    content_ids,
)

log = logging.getLogger("seq2seq.tokenizer")

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MODEL_TYPES",
    "PAD_ID",
    "SPECIAL_IDS",
    "UNK_ID",
    "SentencePieceTokenizer",
    "train_tokenizer",
]


ModelType = Literal["unigram", "bpe", "char", "word"]
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)

# SentencePiece keeps all sentences in memory; beyond this many it trains on a sample.
_MAX_TRAINING_SENTENCES = 5_000_000
# Longer sentences (in bytes) are skipped by SentencePiece; its default of 4192 would
# silently drop long documents.
_MAX_SENTENCE_BYTES = 1 << 16
_SAMPLING_SEED = 0
# How SentencePiece writes a space inside pieces (U+2581).
_SPACE = "\u2581"


class SentencePieceTokenizer(Tokenizer):
    """A trained SentencePiece model: text <-> ids, with the special ids."""

    def __init__(self, model_proto: bytes) -> None:
        self._setup(model_proto)

    def _setup(self, model_proto: bytes) -> None:
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        found = {
            "pad": self._sp.pad_id(),
            "unk": self._sp.unk_id(),
            "bos": self._sp.bos_id(),
            "eos": self._sp.eos_id(),
        }
        if found != SPECIAL_IDS:
            raise ValueError(
                f"the SentencePiece model has special ids {found}, expected {SPECIAL_IDS}; "
                "train it with train_tokenizer"
            )

    @classmethod
    def load(cls, path: Path | str) -> SentencePieceTokenizer:
        """Loads a `.model` file written by `save` (or by `train_tokenizer`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {path}")
        return cls(path.read_bytes())

    def save(self, directory: Path | str, prefix: str) -> Path:
        """Writes `<directory>/<prefix>.model` and a readable `<prefix>.vocab`; returns the model."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = directory / f"{prefix}.model"
        write_bytes_atomic(self._proto, model)
        vocab = "".join(
            f"{self._sp.id_to_piece(i)}\t{self._sp.get_score(i)}\n" for i in range(self.vocab_size)
        )
        write_bytes_atomic(vocab.encode(), directory / f"{prefix}.vocab")
        return model

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included; may be below the requested size on small data."""
        return int(self._sp.get_piece_size())

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what `save` writes)."""
        return self._proto

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without bos/eos."""
        return list(self._sp.encode(text, out_type=int))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self._sp.encode(list(texts), out_type=int)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` up to the first eos, skipping pad and bos; unk shows as ' ⁇ '."""
        return str(self._sp.decode(content_ids(ids)))

    def normalize(self, text: str) -> str:
        """`text` as `decode(encode(text))` gives it back when every piece is known:
        NFKC, runs of whitespace collapsed, none at either end. References are compared
        with decoded hypotheses in this form."""
        return str(self._sp.normalize(text)).replace(_SPACE, " ").strip(" ")

    # SentencePieceProcessor is rebuilt from the model bytes, so tokenizers can be sent
    # to DataLoader workers and other processes.
    def __getstate__(self) -> dict[str, bytes]:
        return {"model_proto": self._proto}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        self._setup(state["model_proto"])


class _Sentences:
    """Iterates non-blank texts once, counting them and, if asked, collecting characters
    or counting words."""

    def __init__(
        self, texts: Iterable[str], *, collect_characters: bool, count_words: bool = False
    ) -> None:
        self._texts = texts
        self._collect = collect_characters
        self._count_words = count_words
        self.count = 0
        self.characters: set[str] = set()
        self.words: Counter[str] = Counter()

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            if text and not text.isspace():
                self.count += 1
                if self._collect:
                    self.characters.update(text)
                if self._count_words:
                    self.words.update(text.split())
                yield text


def _training_error(error: RuntimeError, *, model_type: str, vocab_size: int) -> Exception:
    message = str(error)
    required = re.search(r"required_chars\. \d+ vs (\d+)", message)
    if required:
        return ValueError(
            f"tokenizer.vocab_size={vocab_size} is smaller than the {required.group(1)} "
            "characters and special pieces of the training text; raise tokenizer.vocab_size "
            "or lower tokenizer.character_coverage"
        )
    return RuntimeError(f"SentencePiece failed to train a {model_type} model: {message}")


def _check_char_coverage(
    tokenizer: SentencePieceTokenizer, characters: set[str], *, vocab_size: int
) -> None:
    """A char model silently caps its vocabulary at vocab_size; fail rather than emit unk."""
    missing = sorted(c for c in characters if not c.isspace() and UNK_ID in tokenizer.encode(c))
    if missing:
        raise ValueError(
            f"tokenizer.vocab_size={vocab_size} leaves {len(missing)} characters of the "
            f"training text out of the char vocabulary (e.g. {missing[:10]}); raise "
            f"tokenizer.vocab_size to at least {vocab_size + len(missing)}"
        )


def _warn_word_coverage(
    tokenizer: SentencePieceTokenizer, words: Counter[str], *, vocab_size: int
) -> None:
    """A word model keeps the `vocab_size` most frequent words and reads the others as
    unk: a clear reading of the cap, said once with what it costs."""
    unknown = {word: n for word, n in words.items() if UNK_ID in tokenizer.encode(word)}
    if not unknown:
        return
    share = 100 * sum(unknown.values()) / sum(words.values())
    log.warning(
        "tokenizer.vocab_size=%d keeps %d of the %d distinct words of the training text; the "
        "other %d (%.1f%% of its words, e.g. %s) are read as unk: raise tokenizer.vocab_size "
        "to at least %d to keep them all",
        vocab_size,
        len(words) - len(unknown),
        len(words),
        len(unknown),
        share,
        sorted(unknown, key=lambda word: -unknown[word])[:5],
        vocab_size + len(unknown),
    )


def train_tokenizer(
    texts: Iterable[str],
    *,
    model_type: ModelType,
    vocab_size: int,
    character_coverage: float = 1.0,
    output_dir: Path,
    prefix: str,
) -> SentencePieceTokenizer:
    """Trains a model on `texts` (iterated once) and saves it as `<output_dir>/<prefix>.model`.

    `vocab_size` is an upper bound (`hard_vocab_limit=False`), so small data gives a
    smaller vocabulary rather than an error; read `Tokenizer.vocab_size` for the size.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"tokenizer.model_type={model_type!r} is unknown; choose one of {list(MODEL_TYPES)}"
        )
    if vocab_size <= len(SPECIAL_IDS):
        raise ValueError(
            f"tokenizer.vocab_size={vocab_size} must exceed the {len(SPECIAL_IDS)} special ids"
        )
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"tokenizer.character_coverage={character_coverage} must be in (0, 1]")
    check_chars = model_type == "char" and character_coverage == 1.0
    sentences = _Sentences(texts, collect_characters=check_chars, count_words=model_type == "word")
    model = io.BytesIO()
    spm.set_random_generator_seed(_SAMPLING_SEED)
    try:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            hard_vocab_limit=False,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=_MAX_TRAINING_SENTENCES,
            shuffle_input_sentence=True,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,  # errors only: SentencePiece logs every step to stderr
        )
    except RuntimeError as error:
        if sentences.count == 0:
            raise ValueError(
                "no training text: every text given to the tokenizer is empty"
            ) from error
        raise _training_error(error, model_type=model_type, vocab_size=vocab_size) from error
    tokenizer = SentencePieceTokenizer(model.getvalue())
    if check_chars:
        _check_char_coverage(tokenizer, sentences.characters, vocab_size=vocab_size)
    if model_type == "word":
        _warn_word_coverage(tokenizer, sentences.words, vocab_size=vocab_size)
    tokenizer.save(output_dir, prefix)
    return tokenizer
