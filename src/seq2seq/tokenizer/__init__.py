"""Tokenizers: SentencePiece (trained, cached) and bytes. Tokenizing dataset splits is
`seq2seq.data.tokenization`'s."""

from seq2seq.tokenizer.base import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from seq2seq.tokenizer.byte import ByteTokenizer
from seq2seq.tokenizer.cache import cache_key, load_or_train
from seq2seq.tokenizer.sentencepiece import MODEL_TYPES, SentencePieceTokenizer, train_tokenizer

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MODEL_TYPES",
    "PAD_ID",
    "UNK_ID",
    "ByteTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "cache_key",
    "load_or_train",
    "train_tokenizer",
]
