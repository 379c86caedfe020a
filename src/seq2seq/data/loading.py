"""Load a dataset the way `datasets.load_dataset` takes it and map it onto our split roles.

The result is a `DatasetDict` keyed by role (`train`, `validation`, `test`), each split
with exactly the string columns the task asks for, under the task's names (`source` and
`target` for seq2seq; `text` and `label` for classification ...), taken from the dataset
columns the config names (`data.source`, `data.text` ...).

Line format of the `text` builder: its one column, `text`, holds whole lines. When the
configured columns are absent and `text` is there, each line holds the fields in the
task's order, separated by tabs (`source<TAB>target`; the last field may contain more
tabs); a line with too few tabs is an error. With one field, a line is the field. An
empty line gives an empty example, which cleaning drops and counts.
"""

from __future__ import annotations

import codecs
import glob
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.exceptions import DatasetGenerationError
from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

from seq2seq.utf8 import not_utf8

ROLES = ("train", "validation", "test")
TEXT_COLUMN = "text"
PACKAGED_BUILDERS = ("json", "csv", "parquet", "text")

log = logging.getLogger("seq2seq.data")

# Files not to scan for bad UTF-8: binary formats and compressed files (which datasets
# decompresses; their bytes would look like bad text).
_NOT_TEXT_SUFFIXES = frozenset({".parquet", ".arrow", ".gz", ".bz2", ".xz", ".zst", ".zip"})
_STRING_TYPES = frozenset({"string", "large_string"})
_DECODE_CHUNK = 1 << 20


def _is_remote(file: str) -> bool:
    return "://" in file


def _local_base(path: str) -> Path | None:
    """Where relative data files live, or None when they belong to a hub repository."""
    if path in _PACKAGED_DATASETS_MODULES:
        return Path.cwd()
    if Path(path).is_dir():
        return Path(path)
    return None


def _as_list(files: str | Sequence[str]) -> list[str]:
    return [files] if isinstance(files, str) else list(files)


def _resolve(base: Path, pattern: str) -> list[Path]:
    """The local files that `pattern` (a path or a glob, relative to `base`) names."""
    full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    if glob.has_magic(str(full)):
        # datasets reads the files a pattern matches; the directories it matches are skipped.
        return sorted(
            path for path in map(Path, glob.glob(str(full), recursive=True)) if path.is_file()
        )
    return [full] if full.is_file() else []


def _has_records(file: Path, *, header: bool, probe_bytes: int = 1 << 16) -> bool:
    """Whether `file` holds at least one record: a non-blank line, or with a `header` line
    (CSV) a non-blank line after it. Reads only the start of a large file."""
    with open(file, "rb") as handle:
        head = handle.read(probe_bytes)
    lines = [line for line in head.splitlines() if line.strip()]
    needed = 2 if header else 1
    return len(lines) >= needed or (len(head) == probe_bytes and bool(lines))


def _check_files(
    base: Path, data_files: Mapping[str, list[str]], *, header: bool
) -> dict[str, list[Path]]:
    """Every local data file by data_files key; fails on a missing or empty one, naming it.
    `header`: the files start with a header line (CSV)."""
    found: dict[str, list[Path]] = {}
    for key, patterns in data_files.items():
        found[key] = []
        for pattern in patterns:
            if _is_remote(pattern):
                continue
            files = _resolve(base, pattern)
            if not files:
                raise FileNotFoundError(
                    f"data.data_files.{key}={pattern!r}: no such file (looked in {base})"
                )
            for file in files:
                if not _has_records(file, header=header):
                    raise ValueError(
                        f"data.data_files.{key}={pattern!r}: {file} is empty "
                        "(no examples: no bytes, blank lines only, or a CSV header alone)"
                    )
            found[key] += files
    return found


def _first_undecodable(file: Path) -> int | None:
    """The offset of the first byte of `file` that is not UTF-8, or None; reads by chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with file.open("rb") as stream:
        while chunk := stream.read(_DECODE_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return offset + error.start
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            return offset + error.start
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then the exceptions it was raised from or during, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def _decode_error(error: BaseException) -> UnicodeDecodeError | None:
    """The `UnicodeDecodeError` in `error`'s chain; datasets wraps it in its own errors."""
    return next((e for e in _chain(error) if isinstance(e, UnicodeDecodeError)), None)


def _candidate_files(path: str, files: Mapping[str, list[Path]]) -> Iterator[tuple[str, Path]]:
    yield from ((f"data.data_files.{key}", file) for key, fs in files.items() for file in fs)
    if not files and Path(path).is_dir():
        yield from (
            (f"data.path={path!r}", f) for f in sorted(Path(path).rglob("*")) if f.is_file()
        )


def _not_utf8(path: str, files: Mapping[str, list[Path]], error: BaseException) -> ValueError:
    for key, file in _candidate_files(path, files):
        if file.suffix in _NOT_TEXT_SUFFIXES:
            continue
        offset = _first_undecodable(file)
        if offset is not None:
            return not_utf8(f"{key}: {file}", offset)
    return ValueError(f"data.path={path!r}: a data file is not valid UTF-8 ({error})")


def _check_utf8(
    ds: datasets.Dataset, *, split: str, path: str, files: Mapping[str, list[Path]]
) -> None:
    """Fails if a text column holds bytes that are not UTF-8.

    pyarrow's JSON reader stores such bytes in string columns without complaint; the
    error would surface only when a row is read, far from its cause.
    """
    for column in ds.column_names:
        if not _is_text(ds.features[column]):
            continue
        try:
            ds.data.column(column).validate(full=True)
        except pa.ArrowInvalid as error:
            own = {split: files[split]} if split in files else files
            raise _not_utf8(path, own, error) from error


def _builder_kwargs(path: str, *, columns: Sequence[str]) -> dict[str, Any]:
    if path == "csv":
        # pandas would read "NA", "null", "nan" and empty cells as missing and digits as
        # integers (dropping leading zeros); text means the characters as written.
        return {"na_filter": False, "converters": dict.fromkeys(columns, str)}
    return {}


def _json_problem(text: str) -> tuple[int, str] | None:
    """The first line of JSON-lines `text` that is not a JSON object, and what it is; None
    when every line is one, when the text is one JSON document (the json builder reads
    those too), or when it does not start as JSON at all (another format)."""
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as error:
        document = error
    first = True
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if first and not line.lstrip().startswith(("{", "[")):
                return None
            # A broken first line may open a pretty-printed document: the document's error
            # names its line.
            where = document if first else error
            line_number = document.lineno if first else number
            return line_number, f"is not valid JSON ({where.msg} at column {where.colno})"
        if not isinstance(value, dict):
            return number, f"holds a JSON {type(value).__name__}, not an object"
        first = False
    return None


def _bad_json_line(local: Mapping[str, list[Path]]) -> ValueError | None:
    """The first data file line that the json builder cannot read, named with its key."""
    for key, paths in local.items():
        for file in paths:
            if file.suffix in _NOT_TEXT_SUFFIXES:
                continue
            problem = _json_problem(file.read_text(encoding="utf-8", errors="replace"))
            if problem is not None:
                line, what = problem
                return ValueError(
                    f"data.data_files.{key}: line {line} of {file} {what}; a JSON-lines "
                    "file holds one object per line"
                )
    return None


def _unreadable(
    path: str,
    files: Mapping[str, list[str]],
    error: BaseException,
    local: Mapping[str, list[Path]],
) -> ValueError:
    if path == "json":
        bad_line = _bad_json_line(local)
        if bad_line is not None:
            return bad_line
    *_, cause = _chain(error)  # the innermost: datasets' wrappers hide the reason
    named = ", ".join(
        f"data.data_files.{key}={(value[0] if len(value) == 1 else value)!r}"
        for key, value in files.items()
    )
    reason = " ".join(str(cause).split())  # one line: arrow's cast errors span several
    return ValueError(
        f"data.path={path!r} could not read {named or 'the data'}: "
        f"{type(cause).__name__}: {reason}; check that data.path is the files' format "
        f"(one of {list(PACKAGED_BUILDERS)}) and that every file has the same columns"
    )


def _not_found(path: str, error: BaseException) -> ValueError:
    return ValueError(
        f"data.path={path!r} is not a packaged builder {list(PACKAGED_BUILDERS)}, a local "
        f"directory, or a dataset on the Hugging Face Hub that could be reached ({error})"
    )


def _load(
    path: str, name: str | None, data_files: dict[str, list[str]] | None, kwargs: dict[str, Any]
) -> datasets.DatasetDict:
    loaded = datasets.load_dataset(path, name, data_files=data_files, **kwargs)
    if not isinstance(loaded, datasets.DatasetDict):
        raise TypeError(f"data.path={path!r} loaded as {type(loaded).__name__}, not splits")
    return loaded


def _split_tabs(ds: datasets.Dataset, *, role: str, fields: Sequence[str]) -> datasets.Dataset:
    """Turns the `text` column's lines into `fields`, split on the first tabs."""
    layout = "<TAB>".join(fields)

    def split(lines: list[str], indices: list[int]) -> dict[str, list[str]]:
        columns: list[list[str]] = [[] for _ in fields]
        for line, index in zip(lines, indices, strict=True):
            parts = [""] * len(fields) if not line.strip() else line.split("\t", len(fields) - 1)
            if len(parts) < len(fields):
                tabs = "no tab" if len(parts) == 1 else f"only {len(parts) - 1} tabs"
                raise ValueError(
                    f"line {index + 1} of the {role} split has {tabs}: {line[:80]!r}; "
                    f"the text format is one `{layout}` example per line"
                )
            for column, part in zip(columns, parts, strict=True):
                column.append(part)
        return dict(zip(fields, columns, strict=True))

    return ds.map(
        split,
        batched=True,
        with_indices=True,
        input_columns=[TEXT_COLUMN],
        remove_columns=ds.column_names,
        desc=f"splitting {role} lines on tabs",
    )


def _is_text(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES


def _as_string(ds: datasets.Dataset, column: str, *, field: str) -> datasets.Dataset:
    feature = ds.features[column]
    if _is_text(feature):
        return ds
    if not isinstance(feature, datasets.Value):
        text = [name for name, other in ds.features.items() if _is_text(other)]
        raise ValueError(
            f"{field}={column!r} holds {feature}, not text; choose a text column "
            f"(the text columns: {text})"
        )
    return ds.cast_column(column, datasets.Value("string"))


def _our_columns(
    ds: datasets.Dataset, *, role: str, split: str, columns: Mapping[str, str]
) -> datasets.Dataset:
    """`ds` with exactly our fields (the keys of `columns`) as string columns, taken from
    the dataset columns they name (`data.<field>`)."""
    available = ds.column_names
    missing = [column for column in columns.values() if column not in available]
    if len(missing) == len(set(columns.values())) and available == [TEXT_COLUMN]:
        return _split_tabs(ds, role=role, fields=list(columns))
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
    files = {k: _as_list(v) for k, v in (data_files or {}).items() if v is not None}
    if path in _PACKAGED_DATASETS_MODULES and not files:
        # The builder would otherwise read every file under the working directory.
        raise ValueError(
            f"data.path={path!r} reads local files: set data.data_files.train and "
            "data.data_files.validation (and data.data_files.test)"
        )
    splits = _roles_with_files(splits, files)
    base = _local_base(path)
    local = _check_files(base, files, header=path == "csv") if base is not None else {}
    try:
        loaded = _load(
            path, name, files or None, _builder_kwargs(path, columns=list(columns.values()))
        )
    except (DatasetGenerationError, UnicodeDecodeError) as error:
        decode_error = _decode_error(error)
        if decode_error is None:
            raise _unreadable(path, files, error, local) from error
        raise _not_utf8(path, local, decode_error) from error
    except (ConnectionError, FileNotFoundError) as error:
        if base is not None:
            raise
        raise _not_found(path, error) from error
    except StopIteration as error:
        # The json builder ends this way on a file that holds no records.
        raise ValueError(f"data.path={path!r}: a data file holds no records") from error
    except ValueError as error:
        # The json builder's pandas fallback raises a bare ValueError on a broken line.
        bad_line = _bad_json_line(local) if path == "json" else None
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
        _check_utf8(loaded[split], split=split, path=path, files=local)
        result[role] = _our_columns(loaded[split], role=role, split=split, columns=columns)
    if "train" in result and len(result["train"]) == 0:
        raise ValueError(f"data.splits.train={splits['train']!r}: the train split is empty")
    return datasets.DatasetDict(result)
