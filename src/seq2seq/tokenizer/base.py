"""The tokenizer interface and the special ids every tokenizer shares.

Every tokenizer has pad=0, unk=1, bos=2, eos=3, so the model, the collator and decoding
agree on them whatever the tokenizer. `encode` adds neither bos nor eos; the collators do.
A tokenizer is serialized as bytes (`model_proto`), which checkpoints store and
`seq2seq.tokenizer.stored` turns back into the right kind.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}


class Tokenizer(ABC):
    """Text <-> ids with the special ids above."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included."""

    @property
    @abstractmethod
    def model_proto(self) -> bytes:
        """The serialized tokenizer: what checkpoints store."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the serialized tokenizer: equal fingerprints, equal tokenization."""
        return hashlib.sha256(self.model_proto).hexdigest()

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without bos/eos."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` up to the first eos, skipping pad and bos."""

    @abstractmethod
    def normalize(self, text: str) -> str:
        """`text` as `decode(encode(text))` gives it back: references are compared with
        decoded outputs in this form."""

    @abstractmethod
    def save(self, directory: Path | str, prefix: str) -> Path:
        """Write a readable copy under `directory`; returns the main file."""


def content_ids(ids: Sequence[int]) -> list[int]:
    """`ids` up to the first eos, without pad and bos: what decoding turns into text."""
    kept: list[int] = []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            kept.append(i)
    return kept
