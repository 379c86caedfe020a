"""The source and target tokenizers stored in a checkpoint, so that it alone can decode
and a resumed run tokenizes exactly as the run it continues."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.tokenizer.base import Tokenizer
from seq2seq.tokenizer.byte import PROTO as BYTE_PROTO
from seq2seq.tokenizer.byte import ByteTokenizer
from seq2seq.tokenizer.sentencepiece import SentencePieceTokenizer

CHECKPOINT_KEY = "tokenizer"
SIDES = ("source", "target")


def tokenizer_tensors(source: Tokenizer, target: Tokenizer) -> dict[str, Tensor]:
    """The serialized models as uint8 tensors (a checkpoint holds tensors, not bytes)."""
    return {
        side: torch.frombuffer(bytearray(tokenizer.model_proto), dtype=torch.uint8)
        for side, tokenizer in zip(SIDES, (source, target), strict=True)
    }


def tokenizer_from_proto(proto: bytes) -> Tokenizer:
    """The tokenizer a `model_proto` serializes: a byte tokenizer, or a SentencePiece model."""
    return ByteTokenizer() if proto == BYTE_PROTO else SentencePieceTokenizer(proto)


def stored_tokenizers(checkpoint: Mapping[str, Any], path: Path) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers of a loaded checkpoint; `path` names it in errors."""
    blobs = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(blobs, Mapping) or any(side not in blobs for side in SIDES):
        raise ValueError(
            f"checkpoint {path} has no source and target tokenizer models; it was written "
            "by an older seq2seq-train, retrain or resume to store them"
        )
    loaded = []
    for side in SIDES:
        try:
            loaded.append(tokenizer_from_proto(blobs[side].numpy().tobytes()))
        except RuntimeError as error:  # SentencePiece could not parse the bytes
            raise ValueError(
                f"checkpoint {path}: its stored {side} tokenizer is corrupt ({error})"
            ) from error
    return loaded[0], loaded[1]
