"""Datasets (loaded or generated), cleaning, token-budget batching and collation."""

from seq2seq.data.batching import (
    Batch,
    ResumableDataLoader,
    TokenBatchSampler,
    collate,
    make_dataloader,
)
from seq2seq.data.cleaning import CleanReport, clean_split
from seq2seq.data.lengths import token_lengths
from seq2seq.data.loading import load_splits
from seq2seq.data.tasks import TASKS, generate_splits, generate_task

__all__ = [
    "TASKS",
    "Batch",
    "CleanReport",
    "ResumableDataLoader",
    "TokenBatchSampler",
    "clean_split",
    "collate",
    "generate_splits",
    "generate_task",
    "load_splits",
    "make_dataloader",
    "token_lengths",
]
