"""The checks of the `data` settings that need to know the built-in datasets: where the
data comes from, the settings the chosen data reads, and whether a built-in dataset fits
the run's task. Each raises one ValueError naming the field, the value and what is valid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter

from seq2seq.config.command_line import typed_keys
from seq2seq.config.data import BuiltinData, DataConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.data.datasets_registry import BUILTIN_DATASETS, builtin_fields
from seq2seq.data.loading import ROLES
from seq2seq.data.tasks import TASKS

# What only data.path reads, and what only data.task reads: set beside the other one,
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


TASK_SETTINGS = ("train_size", "validation_size", "test_size", "min_len", "max_len", "num_symbols")


# What only the generators read: a built-in dataset ignores it, and addition's symbols
# are the ten digits.
GENERATOR_SETTINGS = ("min_len", "max_len", "num_symbols")


def check_data_source(data: DataConfig, command_line: Sequence[str]) -> None:
    """Where the data comes from: exactly one of data.task and data.path, the settings each
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
    if (data.task is None) == (data.path is None):
        raise ValueError(
            "set exactly one of data.task (a built-in task: "
            f"{BuiltinData.names()}) and data.path (a datasets path such as json, csv, parquet, "
            f"text or a hub name); got data.task={data.task!r}, data.path={data.path!r}"
        )
    if data.task is not None:
        _check_task_settings(data)
    _check_typed_settings(data, command_line)


def _check_task_settings(data: DataConfig) -> None:
    """A data.task makes its own splits: the file, column and split-name settings of a
    data.path are errors beside it. A split size is at least 1: a role is skipped with null."""
    default = DataConfig()
    for key in PATH_SETTINGS:
        value = attrgetter(key)(data)
        if value != attrgetter(key)(default):
            raise ValueError(
                f"data.{key}={value!r} is read only with data.path, but "
                f"data.task={data.task!r} is set; remove data.{key}"
            )
    for role in ROLES:
        size = getattr(data, f"{role}_size")
        if size is not None and size < 1:
            skip = "" if role != "test" else f"; to skip the role, set data.splits.{role}=null"
            raise ValueError(
                f"data.{role}_size={size} must be a positive integer, or null for the "
                f"task's default{skip}"
            )
    for role, split in asdict(data.splits).items():
        if split not in (role, None):
            raise ValueError(
                f"data.splits.{role}={split!r}: data.task={data.task!r} makes the splits "
                f"{list(ROLES)}; a role is kept under its own name or skipped with null"
            )
    reads = BUILTIN_DATASETS[str(data.task)].reads if data.task in BUILTIN_DATASETS else ()
    if data.task not in BUILTIN_DATASETS or "max_len" in reads:  # min_len and max_len
        if data.min_len < 1:
            raise ValueError(f"data.min_len={data.min_len} must be at least 1")
        if data.max_len < data.min_len:
            raise ValueError(
                f"data.max_len={data.max_len} must be at least data.min_len={data.min_len}"
            )
        reads_symbols = data.task in TASKS and TASKS[str(data.task)].reads_symbols
        if reads_symbols and not 1 <= data.num_symbols <= 26:
            raise ValueError(
                f"data.num_symbols={data.num_symbols} must be in 1..26 (lowercase letters)"
            )


def _unread_settings(data: DataConfig) -> tuple[tuple[str, ...], str]:
    """The data settings the chosen data does not read, and what reads them instead."""
    if data.path is not None:
        return TASK_SETTINGS, f"with data.task, but data.path={data.path!r} is set"
    if data.task in BUILTIN_DATASETS:
        reads = BUILTIN_DATASETS[str(data.task)].reads
        unread = tuple(key for key in GENERATOR_SETTINGS if key not in reads)
        return unread, f"by the generated tasks, but data.task={data.task!r} is set"
    if data.task in TASKS and not TASKS[str(data.task)].reads_symbols:
        return ("num_symbols",), f"by the letter tasks; data.task={data.task!r} has its own symbols"
    return (), ""


def _check_typed_settings(data: DataConfig, command_line: Sequence[str]) -> None:
    """A data setting typed on the command line that the chosen data does not read would
    be silently ignored. Only the command line is checked: a recipe (experiment=toy_reverse)
    sets task settings that a user switching it to other data never typed and cannot remove."""
    typed = set(typed_keys(command_line))
    unread, readers = _unread_settings(data)
    for key in unread:
        if f"data.{key}" in typed:
            raise ValueError(
                f"data.{key}={attrgetter(key)(data)!r} is read only {readers}; remove data.{key}"
            )


def check_builtin_fits(cfg: TrainConfig, fields: Sequence[str], *, task: str) -> None:
    """A built-in `data.task` makes the columns of one kind of training: it must be the
    run's task's (`fields`)."""
    if cfg.data.task is None:
        return
    made = builtin_fields(str(cfg.data.task))
    if set(made) != set(fields):
        fitting = sorted(
            name for name in BuiltinData.names() if set(builtin_fields(name)) == set(fields)
        )
        raise ValueError(
            f"data.task={cfg.data.task!r} makes {list(made)} columns, for another task than "
            f"task={task}; choose one of {fitting}, or set data.path"
        )
