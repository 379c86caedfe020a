"""Load a dataset the way `datasets.load_dataset` takes it and map it onto our split roles.

The result is a `DatasetDict` keyed by role (`train`, `validation`, `test`), each split
with exactly the string columns the task asks for, under the task's names (`source` and
`target` for seq2seq; `text` and `label` for classification ...), taken from the dataset
columns the config names (`data.source`, `data.text` ...).

Line format of the `text` builder: its one column, `text`, holds whole lines. When the
configured columns are absent and `text` is there, each line holds the fields in the
task's order, separated by tabs (`source<TAB>target`; the last field may contain more
tabs); a line with too few tabs is an error naming its file and line. With one field, a
line is the field. An empty line gives an empty example, which cleaning drops and counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import datasets
from datasets.exceptions import DatasetGenerationError
from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

from seq2seq.data.file_checks import (
    as_list,
    bad_json_line,
    check_csv_rows,
    check_files,
    check_tab_lines,
    check_utf8,
    decode_error,
    file_not_utf8,
    is_remote,
    is_text,
    local_base,
    not_found,
    too_few_tabs,
    unreadable,
)

ROLES = ("train", "validation", "test")
TEXT_COLUMN = "text"
# Packaged builders that log an error only just before raising it; load_splits reports the
# raised error in one line, so their log line would say the same thing first.
_RAISING_BUILDERS = ("csv", "json")

log = logging.getLogger("seq2seq.data")


def _builder_kwargs(path: str, *, columns: Sequence[str]) -> dict[str, Any]:
    if path == "csv":
        # pandas would read "NA", "null", "nan" and empty cells as missing and digits as
        # integers (dropping leading zeros); text means the characters as written.
        return {"na_filter": False, "converters": dict.fromkeys(columns, str)}
    return {}


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


@contextmanager
def _quiet(*, local: bool) -> Iterator[None]:
    """Keeps datasets from printing about a file it fails on, ahead of the one line that
    load_splits makes of the error: the builders' log line of the failure and, reading
    `local` files, the progress bar of the split being made (a local file reads at about
    a million rows a second, so the bar is seldom missed)."""
    loggers = [logging.getLogger(_PACKAGED_DATASETS_MODULES[b][0]) for b in _RAISING_BUILDERS]
    # HF_DATASETS_DISABLE_PROGRESS_BARS, when set, has the last word on the bars.
    hide_bars = (
        local
        and datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is None
        and not datasets.are_progress_bars_disabled()
    )
    # A filter load_stream installed for good stays.
    loggers = [logger for logger in loggers if _below_error not in logger.filters]
    for logger in loggers:
        logger.addFilter(_below_error)
    if hide_bars:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hide_bars:
            datasets.enable_progress_bars()
        for logger in loggers:
            logger.removeFilter(_below_error)


def _load(
    path: str, name: str | None, data_files: dict[str, list[str]] | None, kwargs: dict[str, Any]
) -> datasets.DatasetDict:
    local = local_base(path) is not None and not any(
        is_remote(file) for files in (data_files or {}).values() for file in files
    )
    with _quiet(local=local):
        loaded = datasets.load_dataset(path, name, data_files=data_files, **kwargs)
    if not isinstance(loaded, datasets.DatasetDict):
        raise TypeError(f"data.path={path!r} loaded as {type(loaded).__name__}, not splits")
    return loaded


def _split_tabs(
    ds: datasets.Dataset, *, role: str, split: str, fields: Sequence[str]
) -> datasets.Dataset:
    """Turns the `text` column's lines into `fields`, split on the first tabs. Local text
    files were checked by `check_tab_lines`; a line of others is named by its split."""

    def split_lines(lines: list[str], indices: list[int]) -> dict[str, list[str]]:
        columns: list[list[str]] = [[] for _ in fields]
        for line, index in zip(lines, indices, strict=True):
            problem = too_few_tabs(line, fields=fields)
            if problem is not None:
                raise ValueError(f"line {index + 1} of split {split!r} ({role}) {problem}")
            parts = [""] * len(fields) if not line.strip() else line.split("\t", len(fields) - 1)
            for column, part in zip(columns, parts, strict=True):
                column.append(part)
        return dict(zip(fields, columns, strict=True))

    return ds.map(
        split_lines,
        batched=True,
        with_indices=True,
        input_columns=[TEXT_COLUMN],
        remove_columns=ds.column_names,
        desc=f"splitting {role} lines on tabs",
    )


def _as_string(ds: datasets.Dataset, column: str, *, field: str) -> datasets.Dataset:
    feature = ds.features[column]
    if is_text(feature):
        return ds
    if not isinstance(feature, datasets.Value):
        text = [name for name, other in ds.features.items() if is_text(other)]
        raise ValueError(
            f"{field}={column!r} holds {feature}, not text; choose a text column "
            f"(the text columns: {text})"
        )
    return ds.cast_column(column, datasets.Value("string"))


def _splits_on_tabs(columns: Mapping[str, str]) -> bool:
    """Whether a split whose one column is `text` is read as lines of tab-separated
    fields: none of the configured columns is `text` itself."""
    return TEXT_COLUMN not in columns.values()


def _our_columns(
    ds: datasets.Dataset, *, role: str, split: str, columns: Mapping[str, str]
) -> datasets.Dataset:
    """`ds` with exactly our fields (the keys of `columns`) as string columns, taken from
    the dataset columns they name (`data.<field>`)."""
    available = ds.column_names
    if available == [TEXT_COLUMN] and _splits_on_tabs(columns):
        return _split_tabs(ds, role=role, split=split, fields=list(columns))
    for field, column in columns.items():
        if column not in available:
            raise ValueError(
                f"data.{field}={column!r} is not a column of split {split!r} ({role}); "
                f"available columns: {available}"
            )
    for field, column in columns.items():
        ds = _as_string(ds, column, field=f"data.{field}")
    temporary = {field: f"__seq2seq_{field}" for field in columns}
    if len(set(columns.values())) == len(columns):
        # Through temporary names, so that swapped columns (source='target') rename cleanly.
        ds = ds.select_columns(list(columns.values()))
        ds = ds.rename_columns({columns[field]: name for field, name in temporary.items()})
    else:  # one column read as two fields (source = target): copy it
        ds = ds.map(
            lambda *values: dict(zip(temporary.values(), values, strict=True)),
            batched=True,
            input_columns=list(columns.values()),
            remove_columns=available,
        )
    return ds.rename_columns({name: field for field, name in temporary.items()})


def _roles_with_files(splits: Mapping[str, str], files: Mapping[str, list[str]]) -> dict[str, str]:
    """With local `data_files`, the roles whose split has a file: a missing test file
    means no test split (as the default `splits.test` asks for one); any other missing
    file is an error naming it."""
    if not files:
        return dict(splits)
    kept = {}
    for role, split in splits.items():
        if split in files:
            kept[role] = split
        elif role == "test":
            log.info("no data.data_files.%s: the run has no test split", split)
        elif split not in ROLES:
            # data.data_files names its splits by role; no file can be given another name.
            raise ValueError(
                f"data.splits.{role}={split!r}: with data.data_files the splits are named "
                f"by its keys; choose one of {sorted(files)}"
            )
        else:
            raise ValueError(
                f"data.splits.{role}={split!r} has no file: set data.data_files.{split} "
                f"(data.data_files sets {sorted(files)})"
            )
    return kept


def load_splits(
    *,
    path: str,
    name: str | None,
    data_files: Mapping[str, str | Sequence[str] | None] | None,
    splits: Mapping[str, str],
    columns: Mapping[str, str],
) -> datasets.DatasetDict:
    """Load `path` (a builder such as `json`, `csv`, `parquet`, `text`, or a hub name).

    `data_files` maps a split name to a file, a glob or a list of them (None values are
    unset keys); `splits` maps each wanted role to the dataset's split name; `columns`
    maps each of our fields, in order, to the dataset column it is read from
    (`{"source": "src", "target": "tgt"}`). Returns the roles of `splits`, each with
    exactly those fields as string columns (see the module docstring for `text` files).
    """
    for role in splits:
        if role not in ROLES:
            raise ValueError(f"data.splits has key {role!r}; the split roles are {list(ROLES)}")
    files = {k: as_list(v) for k, v in (data_files or {}).items() if v is not None}
    if path in _PACKAGED_DATASETS_MODULES and not files:
        # The builder would otherwise read every file under the working directory.
        raise ValueError(
            f"data.path={path!r} reads local files: set data.data_files.train and "
            "data.data_files.validation (and data.data_files.test)"
        )
    splits = _roles_with_files(splits, files)
    base = local_base(path)
    local = check_files(base, files, header=path == "csv") if base is not None else {}
    if path == "csv":
        check_csv_rows(local)
    if path == "text" and _splits_on_tabs(columns):
        check_tab_lines(
            {split: local[split] for split in splits.values() if split in local},
            fields=list(columns),
        )
    try:
        loaded = _load(
            path, name, files or None, _builder_kwargs(path, columns=list(columns.values()))
        )
    except (DatasetGenerationError, UnicodeDecodeError) as error:
        cause = decode_error(error)
        if cause is None:
            raise unreadable(path, files, error, local) from error
        raise file_not_utf8(path, local, cause) from error
    except (ConnectionError, FileNotFoundError) as error:
        if base is not None:
            raise
        raise not_found(path, error) from error
    except StopIteration as error:
        # The json builder ends this way on a file that holds no records.
        raise ValueError(f"data.path={path!r}: a data file holds no records") from error
    except ValueError as error:
        # The json builder's pandas fallback raises a bare ValueError on a broken line.
        bad_line = bad_json_line(local) if path == "json" else None
        if bad_line is not None:
            raise bad_line from error
        # The csv builder's way of saying that a file has a header and no rows.
        empty = re.search(r'Instruction "([^"]+)" corresponds to no data', str(error))
        if empty is None:
            raise
        raise ValueError(
            f"data.data_files.{empty.group(1)}: the split {empty.group(1)!r} holds no rows"
        ) from error

    result: dict[str, datasets.Dataset] = {}
    for role, split in splits.items():
        if split not in loaded:
            raise ValueError(
                f"data.splits.{role}={split!r} is not a split of {path!r}; "
                f"available splits: {sorted(loaded)}"
            )
        check_utf8(loaded[split], split=split, path=path, files=local)
        result[role] = _our_columns(loaded[split], role=role, split=split, columns=columns)
    if "train" in result and len(result["train"]) == 0:
        raise ValueError(f"data.splits.train={splits['train']!r}: the train split is empty")
    return datasets.DatasetDict(result)


def load_stream(
    *,
    path: str,
    name: str | None,
    data_files: Mapping[str, str | Sequence[str] | None] | None,
    split: str,
    columns: Mapping[str, str],
) -> datasets.IterableDataset:
    """The dataset split `split` of `path` read as a stream (`load_dataset(...,
    streaming=True)`): its rows as the files hold them, read as iteration reaches them.
    `columns_of` turns a window of them into our fields. The files are checked to exist
    first (reading a broken line is an error when the stream reaches it)."""
    files = {k: as_list(v) for k, v in (data_files or {}).items() if v is not None}
    if path in _PACKAGED_DATASETS_MODULES and split not in files:
        raise ValueError(
            f"data.path={path!r} reads local files: set data.data_files.{split} (the "
            "streamed train split)"
        )
    base = local_base(path)
    if base is not None:
        check_files(base, {split: files[split]} if files else {}, header=path == "csv")
    kwargs = _builder_kwargs(path, columns=list(columns.values()))
    # A broken line is read (and raised) as the stream reaches it, where it becomes one
    # error line naming the data: the builders' own log line of it would come first.
    for builder in _RAISING_BUILDERS:
        logger = logging.getLogger(_PACKAGED_DATASETS_MODULES[builder][0])
        if _below_error not in logger.filters:
            logger.addFilter(_below_error)
    try:
        loaded = datasets.load_dataset(
            path, name, data_files=files or None, streaming=True, **kwargs
        )
    except (ConnectionError, FileNotFoundError) as error:
        if base is not None:
            raise
        raise not_found(path, error) from error
    if not isinstance(loaded, datasets.IterableDatasetDict):
        raise TypeError(f"data.path={path!r} loaded as {type(loaded).__name__}, not splits")
    if split not in loaded:
        raise ValueError(
            f"data.splits.train={split!r} is not a split of {path!r}; available splits: "
            f"{sorted(loaded)}"
        )
    return loaded[split]


def columns_of(
    rows: list[dict[str, Any]], *, split: str, columns: Mapping[str, str]
) -> datasets.Dataset:
    """A window of a stream's rows as a split with exactly our fields (as `load_splits`
    makes them: the columns `data.<field>` names, or a text line's tab-separated fields)."""
    return _our_columns(
        datasets.Dataset.from_list(rows), role="train", split=split, columns=columns
    )
