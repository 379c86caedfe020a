"""Token counts of a tokenized split, read from its Arrow columns without Python lists."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow.compute as pc

from seq2seq.data.columns import SOURCE_IDS, TARGET_IDS


def require_token_columns(ds: datasets.Dataset) -> None:
    """Fails unless `ds` has the columns that `tokenize_splits` adds."""
    missing = [c for c in (SOURCE_IDS, TARGET_IDS) if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"the split has no {missing} column(s) (columns: {ds.column_names}); "
            "tokenize it first with seq2seq.data.tokenization.tokenize_splits"
        )


def token_lengths(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Source and target lengths of every example, in row order.

    Returns two int64 arrays of shape (N,), counting ids without bos/eos.
    """
    require_token_columns(ds)
    table = ds.with_format("arrow")
    lengths = []
    for column in (SOURCE_IDS, TARGET_IDS):
        values = pc.list_value_length(table[column])
        # A null list (a missing value) has no tokens.
        lengths.append(pc.fill_null(values, 0).to_numpy().astype(np.int64))
    return lengths[0], lengths[1]
