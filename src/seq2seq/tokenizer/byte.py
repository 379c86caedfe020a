"""The byte tokenizer (`tokenizer=byte`): the 256 byte values of UTF-8 text plus the
specials, nothing to train. Any text round-trips exactly (no normalization), and every
language and script is covered: for language models and long-sequence classification."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seq2seq.atomic import write_bytes_atomic
from seq2seq.tokenizer.base import SPECIAL_IDS, Tokenizer, content_ids

OFFSET = len(SPECIAL_IDS)
"""Byte b has id b + OFFSET."""
PROTO = b"seq2seq byte tokenizer v1"
"""What a checkpoint stores for a byte tokenizer (it has no model to store)."""


class ByteTokenizer(Tokenizer):
    @property
    def vocab_size(self) -> int:
        return 256 + OFFSET

    @property
    def model_proto(self) -> bytes:
        return PROTO

    def encode(self, text: str) -> list[int]:
        return [byte + OFFSET for byte in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of the byte ids up to eos; the specials and unk are skipped, and a
        byte sequence cut inside a character decodes with U+FFFD for it."""
        data = bytes(i - OFFSET for i in content_ids(ids) if i >= OFFSET)
        return data.decode("utf-8", errors="replace")

    def normalize(self, text: str) -> str:
        return text

    def save(self, directory: Path | str, prefix: str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{prefix}.byte"
        write_bytes_atomic(PROTO + b"\n", path)
        return path
