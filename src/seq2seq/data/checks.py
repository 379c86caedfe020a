"""The checks of the `data` settings that need to know the built-in datasets: where the
data comes from, the settings the chosen data reads, and whether a built-in dataset fits
the run's task. Each raises one ValueError naming the field, the value and what is valid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter

from seq2seq.config.command_line import typed_keys
from seq2seq.config.data import DataConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.data.builtin import BUILTIN_DATASETS, GENERATOR_SETTINGS, builtin_dataset
from seq2seq.data.generated import MAX_SYMBOLS
from seq2seq.data.loading import ROLES

# What only data.path reads, and what only data.builtin reads: set beside the other one,
# they would be silently ignored.
PATH_SETTINGS = (
    "name",
    "source",
    "target",
    "text",
    "text_pair",
    "label",
    *(f"data_files.{role}" for role in ROLES),
)
BUILTIN_SETTINGS = ("train_size", "validation_size", "test_size", *GENERATOR_SETTINGS)


def check_data_source(data: DataConfig, command_line: Sequence[str]) -> None:
    """Where the data comes from: exactly one of data.builtin and data.path, the settings each
    reads, the splits, and the loader."""
    if data.num_workers < 0:
        raise ValueError(
            f"data.num_workers={data.num_workers} must be >= 0 (0 loads in the main process)"
        )
    if data.max_tokens < 1:
        raise ValueError(f"data.max_tokens={data.max_tokens} must be a positive integer")
    if data.splits.validation is None:
        raise ValueError(
            "data.splits.validation=None: training needs a validation split (set its split "
            "name, and data.data_files.validation for local files)"
        )
    if (data.builtin is None) == (data.path is None):
        raise ValueError(
            "set exactly one of data.builtin (a built-in dataset: "
            f"{sorted(BUILTIN_DATASETS)}) and data.path (a datasets path such as json, csv, "
            f"parquet, text or a hub name); got data.builtin={data.builtin!r}, "
            f"data.path={data.path!r}"
        )
    if data.builtin is not None:
        _check_builtin_settings(data)
    _check_typed_settings(data, command_line)


def _check_builtin_settings(data: DataConfig) -> None:
    """A data.builtin makes its own splits: the file, column and split-name settings of a
    data.path are errors beside it. A split size is at least 1: a role is skipped with null."""
    assert data.builtin is not None
    reads = builtin_dataset(data.builtin).reads
    default = DataConfig()
    for key in PATH_SETTINGS:
        value = attrgetter(key)(data)
        if value != attrgetter(key)(default):
            raise ValueError(
                f"data.{key}={value!r} is read only with data.path, but "
                f"data.builtin={data.builtin!r} is set; remove data.{key}"
            )
    for role in ROLES:
        size = getattr(data, f"{role}_size")
        if size is not None and size < 1:
            skip = "" if role != "test" else f"; to skip the role, set data.splits.{role}=null"
            raise ValueError(
                f"data.{role}_size={size} must be a positive integer, or null for the "
                f"dataset's default{skip}"
            )
    for role, split in asdict(data.splits).items():
        if split not in (role, None):
            raise ValueError(
                f"data.splits.{role}={split!r}: data.builtin={data.builtin!r} makes the splits "
                f"{list(ROLES)}; a role is kept under its own name or skipped with null"
            )
    if "max_len" in reads:  # min_len and max_len
        if data.min_len < 1:
            raise ValueError(f"data.min_len={data.min_len} must be at least 1")
        if data.max_len < data.min_len:
            raise ValueError(
                f"data.max_len={data.max_len} must be at least data.min_len={data.min_len}"
            )
    if "num_symbols" in reads and not 1 <= data.num_symbols <= MAX_SYMBOLS:
        raise ValueError(
            f"data.num_symbols={data.num_symbols} must be in 1..{MAX_SYMBOLS} (lowercase letters)"
        )


def _unread_settings(data: DataConfig) -> tuple[tuple[str, ...], str]:
    """The data settings the chosen data does not read, and what reads them instead."""
    if data.path is not None:
        return BUILTIN_SETTINGS, f"with data.builtin, but data.path={data.path!r} is set"
    assert data.builtin is not None
    reads = builtin_dataset(data.builtin).reads
    unread = tuple(key for key in GENERATOR_SETTINGS if key not in reads)
    if not reads:
        return unread, f"by the generated datasets, but data.builtin={data.builtin!r} is set"
    return unread, (
        f"by the generated datasets that use it; data.builtin={data.builtin!r} reads only "
        f"{list(reads)}"
    )


def _check_typed_settings(data: DataConfig, command_line: Sequence[str]) -> None:
    """A data setting typed on the command line that the chosen data does not read would
    be silently ignored. Only the command line is checked: a recipe (experiment=toy_reverse)
    sets dataset settings that a user switching it to other data never typed and cannot remove."""
    typed = set(typed_keys(command_line))
    unread, readers = _unread_settings(data)
    for key in unread:
        if f"data.{key}" in typed:
            raise ValueError(
                f"data.{key}={attrgetter(key)(data)!r} is read only {readers}; remove data.{key}"
            )


def check_builtin_fits(cfg: TrainConfig, fields: Sequence[str]) -> None:
    """A built-in `data.builtin` makes the columns of one kind of training: it must be the
    run's task's (`fields`)."""
    if cfg.data.builtin is None:
        return
    made = builtin_dataset(cfg.data.builtin).fields
    if set(made) != set(fields):
        fitting = sorted(
            name for name, dataset in BUILTIN_DATASETS.items() if set(dataset.fields) == set(fields)
        )
        raise ValueError(
            f"data.builtin={cfg.data.builtin!r} makes {list(made)} columns, for another task than "
            f"task={cfg.task}; choose one of {fitting}, or set data.path"
        )
