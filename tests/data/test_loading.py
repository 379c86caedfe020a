from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seq2seq.data.loading import load_splits

PAIRS = {
    "train": [("abc", "cba"), ("hello", "olleh"), ("x y", "y x")],
    "validation": [("ab", "ba")],
}


def _jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _parquet(path: Path, rows: list[dict[str, object]]) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path)


WRITERS: dict[str, tuple[str, Callable[[Path, list[dict[str, object]]], None]]] = {
    "json": ("jsonl", _jsonl),
    "csv": ("csv", _csv),
    "parquet": ("parquet", _parquet),
}


def _write(
    tmp_path: Path, builder: str, splits: dict[str, list[dict[str, object]]]
) -> dict[str, str]:
    suffix, write = WRITERS[builder]
    files = {}
    for split, rows in splits.items():
        files[split] = str(tmp_path / f"{split}.{suffix}")
        write(Path(files[split]), rows)
    return files


def _rows(pairs: list[tuple[str, str]]) -> list[dict[str, object]]:
    # Extra column, other names: load_splits must keep exactly the two it is told to.
    return [{"id": i, "word": s, "spelled": t} for i, (s, t) in enumerate(pairs)]


def _load(path: str, files: dict[str, str] | None, **overrides: object) -> object:
    kwargs: dict[str, object] = {
        "path": path,
        "name": None,
        "data_files": files,
        "splits": {"train": "train", "validation": "validation"},
    }
    columns = {
        "source": overrides.pop("source", "word"),
        "target": overrides.pop("target", "spelled"),
    }
    kwargs.update(overrides, columns=columns)
    return load_splits(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("builder", sorted(WRITERS))
def test_columnar_files_load_into_source_and_target(tmp_path: Path, builder: str) -> None:
    files = _write(tmp_path, builder, {k: _rows(v) for k, v in PAIRS.items()})
    dsd = _load(builder, files)
    assert sorted(dsd) == ["train", "validation"]  # type: ignore[call-overload]
    for role, pairs in PAIRS.items():
        ds = dsd[role]  # type: ignore[index]
        assert ds.column_names == ["source", "target"]
        assert list(zip(ds["source"], ds["target"], strict=True)) == pairs


def test_text_files_split_on_the_first_tab(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("abc\tcba\nhello\tol\tleh\n\n", encoding="utf-8")
    dsd = _load(
        "text", {"train": str(tmp_path / "train.tsv")}, splits={"train": "train"}, source="source"
    )
    ds = dsd["train"]  # type: ignore[index]
    assert ds.column_names == ["source", "target"]
    # The target keeps later tabs; a blank line is an empty example, left to clean_split.
    assert list(zip(ds["source"], ds["target"], strict=True)) == [
        ("abc", "cba"),
        ("hello", "ol\tleh"),
        ("", ""),
    ]


def test_a_text_line_without_a_tab_is_an_error(tmp_path: Path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("abc\tcba\nno tab here\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=rf"^data\.data_files\.train: line 2 of {re.escape(str(train))} has no tab: "
        r"'no tab here'; a text file holds one `source<TAB>target` example per line$",
    ):
        _load("text", {"train": str(train)}, splits={"train": "train"})


def test_text_lines_are_counted_as_datasets_reads_them(tmp_path: Path) -> None:
    """A line is ended by \\n, \\r\\n or \\r alone (datasets reads in universal-newline
    mode); a form feed or a Unicode line separator is inside a line, as datasets keeps it."""
    train = tmp_path / "train.txt"
    train.write_bytes("a\tb\r\n\x0cc\td\u2028e\ra\tb\nbad\r\n".encode())
    with pytest.raises(ValueError, match=rf"line 4 of {re.escape(str(train))} has no tab: 'bad'"):
        _load("text", {"train": str(train)}, splits={"train": "train"})
    train.write_bytes(b"a\tb\r\n\x0cc\td\re\tf\n")
    ds = _load("text", {"train": str(train)}, splits={"train": "train"})["train"]  # type: ignore[index]
    assert ds["source"] == ["a", "\x0cc", "e"]


def test_a_text_file_of_a_split_not_asked_for_is_not_split_on_tabs(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("abc\tcba\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("no tab here\n", encoding="utf-8")
    files = {"train": str(tmp_path / "train.txt"), "test": str(tmp_path / "test.txt")}
    dsd = _load("text", files, splits={"train": "train"})
    assert dsd["train"]["target"] == ["cba"]  # type: ignore[index]


def test_csv_keeps_text_as_written(tmp_path: Path) -> None:
    # pandas would read "NA" and "null" as missing values and "007" as the integer 7.
    files = _write(tmp_path, "csv", {"train": [{"a": "NA", "b": "007"}, {"a": "null", "b": "10"}]})
    dsd = _load("csv", files, splits={"train": "train"}, source="a", target="b")
    assert dsd["train"]["source"] == ["NA", "null"]  # type: ignore[index]
    assert dsd["train"]["target"] == ["007", "10"]  # type: ignore[index]


def test_numbers_become_strings_and_swapped_names_rename_cleanly(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {"train": [{"source": 12, "target": "twelve"}]})
    dsd = _load("json", files, splits={"train": "train"}, source="target", target="source")
    assert dsd["train"][0] == {"source": "twelve", "target": "12"}  # type: ignore[index]


def test_a_role_may_be_absent_and_map_to_another_split_name(tmp_path: Path) -> None:
    files = _write(
        tmp_path, "json", {"train": _rows(PAIRS["train"]), "dev": _rows(PAIRS["validation"])}
    )
    dsd = _load("json", files, splits={"train": "train", "test": "dev"})
    assert sorted(dsd) == ["test", "train"]  # type: ignore[call-overload]
    assert dsd["test"]["source"] == ["ab"]  # type: ignore[index]


def test_a_missing_file_names_the_key_and_path(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {"train": _rows(PAIRS["train"])})
    files["validation"] = str(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match=r"data.data_files.validation=.*nope.jsonl"):
        _load("json", files)


def test_a_missing_column_names_the_field_value_and_columns(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {k: _rows(v) for k, v in PAIRS.items()})
    with pytest.raises(
        ValueError, match=r"data.target='phones'.*available columns: \['id', 'word', 'spelled'\]"
    ):
        _load("json", files, target="phones")
    with pytest.raises(ValueError, match=r"data.source='src'"):
        _load("json", files, source="src")


def test_a_split_without_a_file_names_the_data_files_key(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {"train": _rows(PAIRS["train"])})
    with pytest.raises(
        ValueError,
        match=r"data\.splits\.validation='validation' has no file: set "
        r"data\.data_files\.validation \(data\.data_files sets \['train'\]\)",
    ):
        _load("json", files)


def test_a_missing_split_of_a_directory_lists_the_available_ones(tmp_path: Path) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    _jsonl(data / "train.jsonl", _rows(PAIRS["train"]))
    with pytest.raises(
        ValueError, match=r"data.splits.validation='validation'.*available splits: \['train'\]"
    ):
        _load(str(data), None)


def test_without_a_test_file_there_is_no_test_split(tmp_path: Path) -> None:
    """The default `splits.test` asks for a test split; local files without one skip it."""
    files = _write(tmp_path, "json", {k: _rows(v) for k, v in PAIRS.items()})
    dsd = _load(
        "json", files, splits={"train": "train", "validation": "validation", "test": "test"}
    )
    assert sorted(dsd) == ["train", "validation"]  # type: ignore[call-overload]


@pytest.mark.parametrize("files", [None, {}], ids=["none", "empty"])
def test_a_packaged_builder_needs_data_files(files: dict[str, str] | None) -> None:
    """Without data_files, `json` would read every file under the working directory."""
    with pytest.raises(
        ValueError, match=r"data.path='json' reads local files: set data.data_files"
    ):
        _load("json", files)


def test_a_file_in_another_format_names_data_path_and_the_formats(tmp_path: Path) -> None:
    files = _write(tmp_path, "csv", {k: _rows(v) for k, v in PAIRS.items()})
    with pytest.raises(
        ValueError,
        match=r"data.path='json' could not read data.data_files.train=.*train.csv.*"
        r"check that data.path is the files' format \(one of \['json', 'csv', 'parquet', 'text'\]\)",
    ):
        _load("json", files)


@pytest.mark.parametrize(
    ("lines", "line", "what"),
    [
        (
            ['{"word": "ab", "spelled": "ba"} x'],
            4,
            r"is not valid JSON \(Extra data at column 33\)",
        ),
        (['{"word": "ab", "spelled": '], 4, r"is not valid JSON \(Expecting value at column 27\)"),
        (['["ab", "ba"]'], 4, r"holds a JSON list, not an object"),
    ],
    ids=["trailing-data", "cut-short", "not-an-object"],
)
def test_a_bad_json_line_is_named_by_its_file_and_number(
    tmp_path: Path, lines: list[str], line: int, what: str
) -> None:
    """`ValueError: Trailing data at position 30` named both data files and no line."""
    files = _write(tmp_path, "json", {k: _rows(v) for k, v in PAIRS.items()})
    train = Path(files["train"])
    good = train.read_text(encoding="utf-8")
    train.write_text(good + "\n".join(lines) + "\n" + good, encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=rf"^data\.data_files\.train: line {line} of {train} {what}; a JSON-lines file "
        r"holds one object per line$",
    ):
        _load("json", files)


def test_a_pretty_printed_json_document_is_named_by_the_line_of_its_error(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {k: _rows(v) for k, v in PAIRS.items()})
    train = Path(files["train"])
    train.write_text(
        '[\n  {"word": "ab", "spelled": "ba"},\n  {"word": "cd",, "spelled": "dc"}\n]\n'
    )
    with pytest.raises(ValueError, match=rf"line 3 of {train} is not valid JSON"):
        _load("json", files)


def test_files_with_different_columns_name_data_path(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {"train": _rows(PAIRS["train"])})
    other = tmp_path / "validation.jsonl"
    _jsonl(other, [{"w": "ab", "s": "ba"}])
    files["validation"] = str(other)
    with pytest.raises(ValueError, match=r"data.path='json' could not read .*same columns"):
        _load("json", files)


def test_a_one_line_text_file_is_not_empty(tmp_path: Path) -> None:
    """Only CSV has a header line; one `text` line (whatever its suffix) is one example."""
    train = tmp_path / "train.tsv"
    train.write_text("ab\tba\n", encoding="utf-8")
    dsd = _load("text", {"train": str(train)}, splits={"train": "train"})
    assert dsd["train"]["target"] == ["ba"]  # type: ignore[index]


def test_an_unknown_path_names_data_path_and_the_builders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt builder goes to the Hub; offline here, as with no network at all."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"data.path='jsonl' is not a packaged builder \['json', 'csv', 'parquet', "
        r"'text'\], a local directory, or a dataset on the Hugging Face Hub",
    ):
        _load("jsonl", None)


def test_an_unknown_role_lists_the_roles(tmp_path: Path) -> None:
    files = _write(tmp_path, "json", {"train": _rows(PAIRS["train"])})
    with pytest.raises(ValueError, match=r"data.splits has key 'dev'.*'validation'"):
        _load("json", files, splits={"dev": "train"})


@pytest.mark.parametrize("content", ["", "word,spelled\n"], ids=["empty-file", "header-only"])
def test_an_empty_train_split_is_an_error(tmp_path: Path, content: str) -> None:
    (tmp_path / "train.csv").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"train"):
        _load("csv", {"train": str(tmp_path / "train.csv")}, splits={"train": "train"})


def test_an_empty_train_split_after_filtering_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"data.data_files.train=.*train.jsonl.* is empty"):
        _load("json", {"train": str(tmp_path / "train.jsonl")}, splits={"train": "train"})


@pytest.mark.parametrize(
    ("builder", "content"),
    [
        ("json", b'{"word": "ok", "spelled": "ko"}\n{"word": "\xe9t\xe9", "spelled": "x"}\n'),
        ("csv", b"word,spelled\nok,ko\n\xe9t\xe9,x\n"),
        ("text", b"ok\tko\n\xe9t\xe9\tx\n"),
    ],
)
def test_non_utf8_bytes_name_the_file(tmp_path: Path, builder: str, content: bytes) -> None:
    good = tmp_path / "good.txt"
    good.write_text("ab\tba\n" if builder == "text" else "", encoding="utf-8")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"data.data_files.train: .*latin1.txt is not valid UTF-8"):
        _load(builder, {"train": str(bad)}, splits={"train": "train"})


def test_a_directory_or_a_glob_loads_like_files(tmp_path: Path) -> None:
    data = tmp_path / "corpus"
    data.mkdir()
    _jsonl(data / "train.jsonl", _rows(PAIRS["train"]))
    _jsonl(data / "test.jsonl", _rows(PAIRS["validation"]))
    by_directory = _load(str(data), None, splits={"train": "train", "test": "test"})
    assert by_directory["test"]["source"] == ["ab"]  # type: ignore[index]
    by_glob = _load("json", {"train": str(data / "*.jsonl")}, splits={"train": "train"})
    assert sorted(by_glob["train"]["source"]) == sorted(
        s for s, _ in PAIRS["train"] + PAIRS["validation"]
    )  # type: ignore[index]
    with pytest.raises(FileNotFoundError, match=r"data.data_files.train=.*\*.csv"):
        _load("csv", {"train": str(data / "*.csv")}, splits={"train": "train"})


def test_a_glob_that_also_matches_directories_reads_the_files(tmp_path: Path) -> None:
    """`data/*` and `data/**` match the folders in `data/` too; datasets skips them."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    _jsonl(data / "train.jsonl", _rows(PAIRS["train"]))
    _jsonl(data / "sub" / "more.jsonl", _rows(PAIRS["validation"]))
    shallow = _load("json", {"train": str(data / "*")}, splits={"train": "train"})
    assert sorted(shallow["train"]["source"]) == sorted(s for s, _ in PAIRS["train"])  # type: ignore[index]
    deep = _load("json", {"train": str(data / "**")}, splits={"train": "train"})
    assert sorted(deep["train"]["source"]) == sorted(  # type: ignore[index]
        s for s, _ in PAIRS["train"] + PAIRS["validation"]
    )
    (data / "train.jsonl").unlink()
    (data / "sub" / "more.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"data.data_files.train=.*\*': no such file"):
        _load("json", {"train": str(data / "*")}, splits={"train": "train"})


def test_a_split_name_that_no_data_files_key_has_lists_the_keys(tmp_path: Path) -> None:
    files = _write(
        tmp_path, "json", {"train": _rows(PAIRS["train"]), "validation": _rows(PAIRS["train"])}
    )
    with pytest.raises(
        ValueError,
        match=r"data\.splits\.validation='dev': with data\.data_files the splits are named by "
        r"its keys; choose one of \['train', 'validation'\]",
    ):
        _load("json", files, splits={"train": "train", "validation": "dev"})


def test_a_column_that_is_not_text_lists_the_text_columns(tmp_path: Path) -> None:
    rows = [{"word": "ab", "spelled": "a b", "meta": {"x": 1}}]
    files = _write(tmp_path, "json", {"train": rows, "validation": rows})
    with pytest.raises(
        ValueError,
        match=r"data\.target='meta' holds .*not text.*the text columns: \['word', 'spelled'\]",
    ):
        _load("json", files, target="meta")
