"""SentencePiece tokenizers: training, caching, and tokenizing dataset splits."""

from seq2seq.tokenizer.build import build_tokenizers, tokenize_splits
from seq2seq.tokenizer.cache import cache_key, load_or_train
from seq2seq.tokenizer.sentencepiece import (
    BOS_ID,
    EOS_ID,
    MODEL_TYPES,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    train_tokenizer,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MODEL_TYPES",
    "PAD_ID",
    "UNK_ID",
    "Tokenizer",
    "build_tokenizers",
    "cache_key",
    "load_or_train",
    "tokenize_splits",
    "train_tokenizer",
]
