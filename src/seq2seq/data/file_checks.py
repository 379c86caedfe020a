"""The checks of local data files before and after `datasets` reads them, so that a bad
file is named with its line: missing files and globs that match nothing, files without a
record, CSV rows whose fields do not match the header, bad UTF-8 (by byte offset) and bad
JSON (by line), and `datasets`' own errors turned into one line that names the file."""

from __future__ import annotations

import codecs
import csv
import glob
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

from seq2seq.utf8 import not_utf8

PACKAGED_BUILDERS = ("json", "csv", "parquet", "text")
# Files not to scan for bad UTF-8: binary formats and compressed files (which datasets
# decompresses; their bytes would look like bad text).
_NOT_TEXT_SUFFIXES = frozenset({".parquet", ".arrow", ".gz", ".bz2", ".xz", ".zst", ".zip"})
_DECODE_CHUNK = 1 << 20
_STRING_TYPES = frozenset({"string", "large_string"})
# pandas reads fields of any length; Python's csv module stops at 128 KiB unless told.
_CSV_FIELD_LIMIT = 2**31 - 1  # a C long on every platform


def is_text(feature: object) -> bool:
    """Whether a dataset feature is a string column."""
    return isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES


def is_remote(file: str) -> bool:
    return "://" in file


def local_base(path: str) -> Path | None:
    """Where relative data files live, or None when they belong to a hub repository."""
    if path in _PACKAGED_DATASETS_MODULES:
        return Path.cwd()
    if Path(path).is_dir():
        return Path(path)
    return None


def as_list(files: str | Sequence[str]) -> list[str]:
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


def check_files(
    base: Path, data_files: Mapping[str, list[str]], *, header: bool
) -> dict[str, list[Path]]:
    """Every local data file by data_files key; fails on a missing or empty one, naming it.
    `header`: the files start with a header line (CSV)."""
    found: dict[str, list[Path]] = {}
    for key, patterns in data_files.items():
        found[key] = []
        for pattern in patterns:
            if is_remote(pattern):
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


def _csv_problem(file: Path) -> tuple[int, str] | None:
    """The first row of CSV `file` that pandas would misread or refuse, and what is wrong
    with it: another number of fields than the header (pandas fills a short row's last
    fields with empty text, and takes a first row with extra fields as holding an index),
    or a quote that is never closed. Rows are read as pandas reads them: blank and
    whitespace-only lines are skipped, a quoted field may hold commas and line breaks.
    Raises UnicodeDecodeError on bytes that are not UTF-8."""
    header: list[str] | None = None
    header_line = 0
    with file.open(encoding="utf-8", newline="") as stream:
        # strict: to tell a quote left open at the end of the file, which pandas refuses.
        reader = csv.reader(stream, strict=True)
        end = 0
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                return None
            except csv.Error as error:
                # The csv module's words for end of file inside a quoted field.
                if str(error) == "unexpected end of data":
                    return start, (
                        "opens a quoted field that is never closed (it runs to the end of "
                        'the file); a quote inside a field is written twice ("a ""b"" c")'
                    )
                # A stray quote (`"ab"c`): pandas reads the row its own way, so it is not
                # counted; the reader goes on at the next line.
                end = reader.line_num
                continue
            end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header, header_line = row, start
                continue
            if len(row) == len(header):
                continue
            if len(row) > len(header):
                advice = 'quote a field that holds a comma ("a,b")'
            else:
                advice = (
                    "every row has one field per column (an empty field is nothing "
                    "between two commas)"
                )
            spans = "" if end == start else f" (to line {end}: a quoted field spans lines)"
            fields = "field" if len(row) == 1 else "fields"
            return start, (
                f"has {len(row)} {fields}{spans}, but its header (line {header_line}) has "
                f"{len(header)}: {header}; {advice}"
            )


def check_csv_rows(files: Mapping[str, list[Path]]) -> None:
    """Fails on the first CSV row of `files` (by data_files key) that `_csv_problem`
    finds, naming its key, file and line; on bytes that are not UTF-8, their offset.
    Streams each file once, before datasets reads it."""
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        for key, paths in files.items():
            for file in paths:
                if file.suffix in _NOT_TEXT_SUFFIXES:
                    continue
                try:
                    problem = _csv_problem(file)
                except UnicodeDecodeError as error:
                    raise file_not_utf8("csv", {key: [file]}, error) from error
                if problem is not None:
                    line, what = problem
                    raise ValueError(f"data.data_files.{key}: line {line} of {file} {what}")
    finally:
        csv.field_size_limit(limit)


def too_few_tabs(line: str, *, fields: Sequence[str]) -> str | None:
    """What is wrong with a text line that does not hold `fields` separated by tabs, or
    None; a blank line is an empty example (cleaning drops and counts it)."""
    tabs = line.count("\t")
    if tabs >= len(fields) - 1 or not line.strip():
        return None
    found = "no tab" if tabs == 0 else f"only {tabs} tab{'s' if tabs > 1 else ''}"
    return (
        f"has {found}: {line[:80]!r}; a text file holds one `{'<TAB>'.join(fields)}` "
        "example per line"
    )


def check_tab_lines(files: Mapping[str, list[Path]], *, fields: Sequence[str]) -> None:
    """Fails on the first line of `files` (by data_files key) with too few tabs, naming its
    key, file and line. Lines are read as the text builder reads them (UTF-8, universal
    newlines: `\\n`, `\\r\\n` or a lone `\\r` ends one), before it reads them, so the
    refusal comes ahead of any progress bar."""
    for key, paths in files.items():
        for file in paths:
            if file.suffix in _NOT_TEXT_SUFFIXES:
                continue  # compressed: the tab split below names the split instead
            try:
                with file.open(encoding="utf-8") as stream:
                    for number, line in enumerate(stream, start=1):
                        problem = too_few_tabs(line.removesuffix("\n"), fields=fields)
                        if problem is not None:
                            raise ValueError(
                                f"data.data_files.{key}: line {number} of {file} {problem}"
                            )
            except UnicodeDecodeError as error:
                raise file_not_utf8("text", {key: [file]}, error) from error


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


def decode_error(error: BaseException) -> UnicodeDecodeError | None:
    """The `UnicodeDecodeError` in `error`'s chain; datasets wraps it in its own errors."""
    return next((e for e in _chain(error) if isinstance(e, UnicodeDecodeError)), None)


def _candidate_files(path: str, files: Mapping[str, list[Path]]) -> Iterator[tuple[str, Path]]:
    yield from ((f"data.data_files.{key}", file) for key, fs in files.items() for file in fs)
    if not files and Path(path).is_dir():
        yield from (
            (f"data.path={path!r}", f) for f in sorted(Path(path).rglob("*")) if f.is_file()
        )


def file_not_utf8(path: str, files: Mapping[str, list[Path]], error: BaseException) -> ValueError:
    for key, file in _candidate_files(path, files):
        if file.suffix in _NOT_TEXT_SUFFIXES:
            continue
        offset = _first_undecodable(file)
        if offset is not None:
            return not_utf8(f"{key}: {file}", offset)
    return ValueError(f"data.path={path!r}: a data file is not valid UTF-8 ({error})")


def check_utf8(
    ds: datasets.Dataset, *, split: str, path: str, files: Mapping[str, list[Path]]
) -> None:
    """Fails if a text column holds bytes that are not UTF-8.

    pyarrow's JSON reader stores such bytes in string columns without complaint; the
    error would surface only when a row is read, far from its cause.
    """
    for column in ds.column_names:
        if not is_text(ds.features[column]):
            continue
        try:
            ds.data.column(column).validate(full=True)
        except pa.ArrowInvalid as error:
            own = {split: files[split]} if split in files else files
            raise file_not_utf8(path, own, error) from error


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


def bad_json_line(local: Mapping[str, list[Path]]) -> ValueError | None:
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


def unreadable(
    path: str,
    files: Mapping[str, list[str]],
    error: BaseException,
    local: Mapping[str, list[Path]],
) -> ValueError:
    if path == "json":
        bad_line = bad_json_line(local)
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


def not_found(path: str, error: BaseException) -> ValueError:
    return ValueError(
        f"data.path={path!r} is not a packaged builder {list(PACKAGED_BUILDERS)}, a local "
        f"directory, or a dataset on the Hugging Face Hub that could be reached ({error})"
    )
