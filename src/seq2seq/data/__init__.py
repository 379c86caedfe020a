"""Datasets (loaded or generated), cleaning, token-budget batching and collation."""

from seq2seq.data.batching import (
    PairBatch,
    ResumableDataLoader,
    TokenBatchSampler,
    collate_pairs,
    make_dataloader,
)
from seq2seq.data.builtin import BUILTIN_DATASETS, builtin_dataset
from seq2seq.data.cleaning import CleanReport, clean_split
from seq2seq.data.generated import GENERATORS, generate_examples, generate_splits
from seq2seq.data.lengths import token_lengths
from seq2seq.data.loading import load_splits

__all__ = [
    "BUILTIN_DATASETS",
    "GENERATORS",
    "CleanReport",
    "PairBatch",
    "ResumableDataLoader",
    "TokenBatchSampler",
    "builtin_dataset",
    "clean_split",
    "collate_pairs",
    "generate_examples",
    "generate_splits",
    "load_splits",
    "make_dataloader",
    "token_lengths",
]
