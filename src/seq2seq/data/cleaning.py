"""Drop empty examples and drop or truncate over-long ones, counting each, never silently."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, get_args

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seq2seq.data.columns import SOURCE_IDS, TARGET_IDS
from seq2seq.data.lengths import require_token_columns

Overlong = Literal["drop", "truncate"]
OVERLONG_CHOICES: tuple[str, ...] = get_args(Overlong)


@dataclass(frozen=True)
class CleanReport:
    """What `clean_split` did to one split.

    `dropped_overlong` and `truncated` count the same kind of example (longer than
    `max_source_len` or `max_target_len`); which one is non-zero depends on `overlong`.
    """

    overlong: Overlong
    total: int
    dropped_empty: int
    dropped_overlong: int
    truncated: int
    max_source_len: int
    max_target_len: int | None
    """None for one-sequence examples (classification inputs)."""

    @property
    def kept(self) -> int:
        return self.total - self.dropped_empty - self.dropped_overlong

    def __add__(self, other: CleanReport) -> CleanReport:
        """Both parts of a split together (the windows of a stream)."""
        return replace(
            self,
            total=self.total + other.total,
            dropped_empty=self.dropped_empty + other.dropped_empty,
            dropped_overlong=self.dropped_overlong + other.dropped_overlong,
            truncated=self.truncated + other.truncated,
        )

    @property
    def limits(self) -> str:
        """What counts as over-long, in words."""
        if self.max_target_len is None:
            return f"input > {self.max_source_len} tokens"
        return f"source > {self.max_source_len} or target > {self.max_target_len} tokens"

    def __str__(self) -> str:
        action, count = (
            ("dropped", self.dropped_overlong)
            if self.overlong == "drop"
            else ("truncated", self.truncated)
        )
        return (
            f"kept {self.kept}/{self.total} examples; dropped {self.dropped_empty} empty; "
            f"{action} {count} over-long ({self.limits})"
        )


def _keep(mask: np.ndarray) -> Callable[[pa.Table, list[int]], np.ndarray]:
    """A batched filter over Arrow batches keeping the rows where `mask` is True."""

    def keep(_: pa.Table, indices: list[int]) -> np.ndarray:
        return mask[indices]

    return keep


def _truncate(limits: dict[str, int]) -> Callable[[pa.Table], pa.Table]:
    """Cut every column of `limits` to its first `limits[column]` ids."""

    def truncate(batch: pa.Table) -> pa.Table:
        for column, limit in limits.items():
            index = batch.schema.get_field_index(column)
            batch = batch.set_column(index, column, pc.list_slice(batch[column], 0, limit))
        return batch

    return truncate


def _restore_format(ds: datasets.Dataset, like: datasets.Dataset) -> datasets.Dataset:
    fmt = like.format
    return ds.with_format(
        fmt["type"],
        columns=fmt["columns"],
        output_all_columns=fmt["output_all_columns"],
        **fmt["format_kwargs"],
    )


def clean_split(
    ds: datasets.Dataset, *, max_source_len: int, max_target_len: int, overlong: Overlong
) -> tuple[datasets.Dataset, CleanReport]:
    """Drops examples with an empty source or target, then drops or truncates over-long ones.

    `ds` has the token-id columns `source_ids` and `target_ids`; lengths count ids
    without the bos/eos that `collate_pairs` adds (the decoder sees `target + 1` positions).
    Truncation keeps the first `max_*_len` ids, so a truncated target loses its end.
    """
    if max_source_len < 1:
        raise ValueError(f"data.max_source_len={max_source_len} must be at least 1")
    if max_target_len < 1:
        raise ValueError(f"data.max_target_len={max_target_len} must be at least 1")
    if overlong not in OVERLONG_CHOICES:
        raise ValueError(f"data.overlong={overlong!r}; choose one of {list(OVERLONG_CHOICES)}")
    require_token_columns(ds)
    return _clean(
        ds,
        {SOURCE_IDS: max_source_len, TARGET_IDS: max_target_len},
        overlong=overlong,
        report_limits=(max_source_len, max_target_len),
    )


def clean_inputs(
    ds: datasets.Dataset, column: str, *, max_len: int, overlong: Overlong
) -> tuple[datasets.Dataset, CleanReport]:
    """`clean_split` for one-sequence examples: drops those whose `column` (token ids) is
    empty, then drops or truncates those longer than `max_len` (the first ids are kept)."""
    return _clean(ds, {column: max_len}, overlong=overlong, report_limits=(max_len, None))


def _clean(
    ds: datasets.Dataset,
    limits: dict[str, int],
    *,
    overlong: Overlong,
    report_limits: tuple[int, int | None],
) -> tuple[datasets.Dataset, CleanReport]:
    """Drop the examples with an empty column of `limits`, then drop or truncate those
    with a column longer than its limit; report each count."""
    table = ds.with_format("arrow")
    lengths = {
        column: pc.fill_null(pc.list_value_length(table[column]), 0).to_numpy().astype(np.int64)
        for column in limits
    }
    empty = np.logical_or.reduce([length == 0 for length in lengths.values()])
    long = ~empty & np.logical_or.reduce(
        [length > limits[column] for column, length in lengths.items()]
    )
    drop = empty | long if overlong == "drop" else empty
    report = CleanReport(
        overlong=overlong,
        total=len(ds),
        dropped_empty=int(empty.sum()),
        dropped_overlong=int(long.sum()) if overlong == "drop" else 0,
        truncated=int(long.sum()) if overlong == "truncate" else 0,
        max_source_len=report_limits[0],
        max_target_len=report_limits[1],
    )
    cleaned = table
    if drop.any():
        cleaned = cleaned.filter(_keep(~drop), batched=True, with_indices=True)
    if report.truncated:
        cleaned = cleaned.map(_truncate(limits), batched=True)
    return _restore_format(cleaned, ds), report
