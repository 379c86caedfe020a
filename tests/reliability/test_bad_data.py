"""Bad data files through `train()` with `data.path=json/csv/text`: each failure names the
config field, the file and what is wrong; empty and over-long examples are counted in the
log, never dropped silently."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from seq2seq.jobs.train import train

Compose = Callable[..., DictConfig]

WORDS = ["abc", "hello", "world", "seq", "tide", "cab"] * 6
LONG_WORDS = ["abcdefghijkl", "mnopqrstuvwx"]  # 12 letters: over any limit below 10
CLEAN_SPLIT_LOG = "seq2seq.data"


def _jsonl(path: Path, words: list[str]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"src": w, "tgt": w[::-1], "id": i}) + "\n" for i, w in enumerate(words)
        ),
        encoding="utf-8",
    )
    return path


def _tsv(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _files_config(
    compose_config: Compose,
    builder: str,
    train_file: Path,
    valid_file: Path,
    *overrides: str,
) -> DictConfig:
    columns = ("data.source=src", "data.target=tgt") if builder != "text" else ()
    return compose_config(
        f"data.path={builder}",
        f"data.data_files.train={train_file}",
        f"data.data_files.validation={valid_file}",
        "data.splits.test=null",
        *columns,
        "tokenizer=char",
        "tokenizer.vocab_size=64",
        f"tokenizer.cache_dir={train_file.parent / 'tokenizer-cache'}",
        *overrides,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


def test_a_missing_file_names_the_key_and_the_path(
    compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    missing = data_dir / "trian.jsonl"
    cfg = _files_config(compose_config, "json", missing, _jsonl(data_dir / "valid.jsonl", WORDS))
    with pytest.raises(
        FileNotFoundError,
        match=rf"data\.data_files\.train='{re.escape(str(missing))}': no such file",
    ):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "tokenizer").exists()


@pytest.mark.parametrize("builder", ["json", "csv"])
def test_a_missing_column_names_the_field_the_value_and_the_columns(
    builder: str, compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    if builder == "json":
        train_file = _jsonl(data_dir / "train.jsonl", WORDS)
    else:
        train_file = data_dir / "train.csv"
        train_file.write_text(
            "src,tgt,id\n" + "".join(f"{w},{w[::-1]},{i}\n" for i, w in enumerate(WORDS)),
            encoding="utf-8",
        )
    cfg = _files_config(compose_config, builder, train_file, train_file, "data.source=word")
    with pytest.raises(
        ValueError,
        match=r"data\.source='word' is not a column of split 'train'.*"
        r"available columns: \['src', 'tgt', 'id'\]",
    ):
        train(cfg, tmp_path / "run")


def test_an_empty_train_file_names_the_key_and_the_file(
    compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    empty = data_dir / "train.jsonl"
    empty.write_text("", encoding="utf-8")
    cfg = _files_config(compose_config, "json", empty, _jsonl(data_dir / "valid.jsonl", WORDS))
    with pytest.raises(
        ValueError, match=rf"data\.data_files\.train=.*{re.escape(str(empty))} is empty"
    ):
        train(cfg, tmp_path / "run")


def test_a_header_only_csv_names_the_empty_split(
    compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    header = data_dir / "train.csv"
    header.write_text("src,tgt\n", encoding="utf-8")
    valid = data_dir / "valid.csv"
    valid.write_text("src,tgt\nab,ba\n", encoding="utf-8")
    cfg = _files_config(compose_config, "csv", header, valid)
    with pytest.raises(ValueError, match=r"data\.data_files\.train.*(holds no rows|empty)"):
        train(cfg, tmp_path / "run")


def test_a_blank_lines_only_json_file_names_the_key_and_the_file(
    compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    blank = data_dir / "train.jsonl"
    blank.write_text("\n\n\n", encoding="utf-8")
    cfg = _files_config(compose_config, "json", blank, _jsonl(data_dir / "valid.jsonl", WORDS))
    with pytest.raises(ValueError, match=rf"data\.data_files\.train.*{re.escape(str(blank))}"):
        train(cfg, tmp_path / "run")


def test_a_train_split_of_only_empty_examples_names_the_split(
    compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    blank = _tsv(data_dir / "train.txt", ["", "\t", "", "\t"])
    valid = _tsv(data_dir / "valid.txt", ["ab\tba"])
    cfg = _files_config(compose_config, "text", blank, valid)
    with pytest.raises(ValueError, match=r"(train split|data\.data_files\.train).*empty"):
        train(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    ("builder", "content"),
    [
        ("json", b'{"src": "ok", "tgt": "ko"}\n{"src": "\xe9t\xe9", "tgt": "x"}\n'),
        ("csv", b"src,tgt\nok,ko\n\xe9t\xe9,x\n"),
        ("text", b"ok\tko\n\xe9t\xe9\tx\n"),
    ],
)
def test_non_utf8_bytes_name_the_file(
    builder: str, content: bytes, compose_config: Compose, tmp_path: Path, data_dir: Path
) -> None:
    latin1 = data_dir / f"latin1.{builder}"
    latin1.write_bytes(content)
    cfg = _files_config(compose_config, builder, latin1, latin1)
    with pytest.raises(
        ValueError,
        match=rf"data\.data_files\.(train|validation): {re.escape(str(latin1))} is not valid "
        r"UTF-8 \(first bad byte at offset \d+\)",
    ):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "tokenizer").exists()


def _report(caplog: pytest.LogCaptureFixture, role: str) -> str:
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == CLEAN_SPLIT_LOG and r.getMessage().startswith(f"{role} split:")
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_empty_sources_and_targets_are_skipped_and_counted(
    compose_config: Compose,
    tmp_path: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    stop_after_data: type[Exception],
) -> None:
    good = [f"{w}\t{w[::-1]}" for w in WORDS]
    # Empty source, empty target, a blank line, and whitespace that normalizes to nothing.
    bad = ["\tabc", "abc\t", "", " \t "]
    train_file = _tsv(data_dir / "train.txt", good[:10] + bad + good[10:])
    valid_file = _tsv(data_dir / "valid.txt", [*good[:4], "xyz\t"])
    cfg = _files_config(compose_config, "text", train_file, valid_file)
    with caplog.at_level(logging.INFO, logger=CLEAN_SPLIT_LOG), pytest.raises(stop_after_data):
        train(cfg, tmp_path / "run")
    total = len(good) + len(bad)
    assert _report(caplog, "train").startswith(
        f"train split: kept {len(good)}/{total} examples; dropped {len(bad)} empty; "
        "dropped 0 over-long"
    )
    assert _report(caplog, "validation").startswith(
        "validation split: kept 4/5 examples; dropped 1 empty;"
    )
    # A held-out example left unscored is a warning; training's dropped ones are not.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "1 of 5 validation examples are empty (no source or no target text) and are not "
        "scored: the validation figures cover the other 4"
    ]


@pytest.mark.parametrize(
    ("overlong", "counted"),
    [("drop", "dropped 2 over-long"), ("truncate", "truncated 2 over-long")],
)
def test_overlong_examples_are_dropped_or_truncated_and_counted(
    overlong: str,
    counted: str,
    compose_config: Compose,
    tmp_path: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    stop_after_data: type[Exception],
) -> None:
    train_file = _jsonl(data_dir / "train.jsonl", WORDS + LONG_WORDS)
    valid_file = _jsonl(data_dir / "valid.jsonl", WORDS[:4])
    cfg = _files_config(
        compose_config,
        "json",
        train_file,
        valid_file,
        "data.max_source_len=8",
        "data.max_target_len=8",
        f"data.overlong={overlong}",
    )
    with caplog.at_level(logging.INFO, logger=CLEAN_SPLIT_LOG), pytest.raises(stop_after_data):
        train(cfg, tmp_path / "run")
    kept = len(WORDS) + (2 if overlong == "truncate" else 0)
    total = len(WORDS) + len(LONG_WORDS)
    assert _report(caplog, "train") == (
        f"train split: kept {kept}/{total} examples; dropped 0 empty; {counted} "
        "(source > 8 or target > 8 tokens)"
    )


def test_overlong_held_out_examples_are_truncated_so_all_are_scored(
    compose_config: Compose,
    tmp_path: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    stop_after_data: type[Exception],
) -> None:
    cfg = _files_config(
        compose_config,
        "json",
        _jsonl(data_dir / "train.jsonl", WORDS),
        _jsonl(data_dir / "valid.jsonl", WORDS[:4] + LONG_WORDS),
        "data.max_source_len=8",
        "data.max_target_len=8",
        "data.overlong=drop",
    )
    with caplog.at_level(logging.INFO, logger=CLEAN_SPLIT_LOG), pytest.raises(stop_after_data):
        train(cfg, tmp_path / "run")
    assert _report(caplog, "validation") == (
        f"validation split: kept {4 + len(LONG_WORDS)}/{4 + len(LONG_WORDS)} examples; "
        f"dropped 0 empty; truncated {len(LONG_WORDS)} over-long (source > 8 or target > 8 tokens)"
    )
    assert any(
        record.levelno == logging.WARNING
        and record.getMessage().startswith(f"{len(LONG_WORDS)} validation example(s) are longer")
        for record in caplog.records
    )


def test_truncated_examples_train(compose_config: Compose, tmp_path: Path, data_dir: Path) -> None:
    """Truncation rewrites Arrow list columns; the batches it yields must still train."""
    train_file = _jsonl(data_dir / "train.jsonl", WORDS + LONG_WORDS * 5)
    cfg = _files_config(
        compose_config,
        "json",
        train_file,
        _jsonl(data_dir / "valid.jsonl", LONG_WORDS),
        "data.max_source_len=6",
        "data.max_target_len=6",
        "data.overlong=truncate",
        "trainer.max_steps=2",
        "trainer.eval_every=2",
    )
    run = tmp_path / "run"
    train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", 2)


def _train_from_the_command_line(
    tmp_path: Path,
    env: dict[str, str],
    builder: str,
    train_file: Path,
    valid_file: Path,
) -> subprocess.CompletedProcess[str]:
    """`seq2seq-train` on the files, with datasets' progress bars on as a user sees them;
    the run dir is `tmp_path/outputs/run`."""
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    env.pop("TQDM_DISABLE", None)
    command = [
        sys.executable,
        "-m",
        "seq2seq.cli.train",
        "model=tiny",
        "trainer=debug",
        f"data.path={builder}",
        f"data.data_files.train={train_file}",
        f"data.data_files.validation={valid_file}",
        "data.source=src",
        "data.target=tgt",
        "tokenizer=char",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'outputs' / 'run'}",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _assert_refused(done: subprocess.CompletedProcess[str], tmp_path: Path, line: str) -> None:
    """Exit status 2, `line` as the whole of stderr (no traceback, no progress bar, no
    log line of datasets), and no run dir left behind."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"seq2seq-train: error: {line}"]
    assert "[datasets" not in done.stdout, done.stdout
    assert not (tmp_path / "outputs" / "run").exists()


def test_a_bad_json_line_from_the_command_line_is_one_line_and_leaves_no_run_dir(
    tmp_path: Path,
    data_dir: Path,
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """The refusal names the file and the line; the run, refused during data work, leaves
    no run dir (it left one holding only train.log). datasets' progress bar and its own
    report of the failure printed two lines before it."""
    train_file = _jsonl(data_dir / "train.jsonl", WORDS)
    good = train_file.read_text(encoding="utf-8").splitlines(keepends=True)
    train_file.write_text("".join(good[:5]) + '{"src": "ab", "tgt": "ba"} x\n' + "".join(good[5:]))
    valid_file = _jsonl(data_dir / "valid.jsonl", WORDS[:4])
    done = _train_from_the_command_line(
        tmp_path, make_subprocess_env(tmp_path), "json", train_file, valid_file
    )
    _assert_refused(
        done,
        tmp_path,
        f"data.data_files.train: line 6 of {train_file} is not valid JSON (Extra data at "
        "column 28); a JSON-lines file holds one object per line",
    )


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("src,tgt\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "refusal"),
    [
        (
            "ab,ba,extra",
            "has 3 fields, but its header (line 1) has 2: ['src', 'tgt']; quote a field "
            'that holds a comma ("a,b")',
        ),
        (
            "abonly",
            "has 1 field, but its header (line 1) has 2: ['src', 'tgt']; every row has one "
            "field per column (an empty field is nothing between two commas)",
        ),
        (
            'ab,"ba',
            "opens a quoted field that is never closed (it runs to the end of the file); a "
            'quote inside a field is written twice ("a ""b"" c")',
        ),
    ],
    ids=["too-many-fields", "too-few-fields", "unclosed-quote"],
)
def test_a_ragged_csv_row_is_refused_naming_its_file_and_line(
    row: str,
    refusal: str,
    tmp_path: Path,
    data_dir: Path,
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """A row with too many fields named every data file, with a hint about formats; one
    with too few became an empty target, dropped as empty; both now name the line (7:
    the header, then five rows)."""
    good = [f"{w},{w[::-1]}" for w in WORDS]
    train_file = _csv(data_dir / "train.csv", [*good[:5], row, *good[5:]])
    valid_file = _csv(data_dir / "valid.csv", good[:4])
    done = _train_from_the_command_line(
        tmp_path, make_subprocess_env(tmp_path), "csv", train_file, valid_file
    )
    _assert_refused(done, tmp_path, f"data.data_files.train: line 7 of {train_file} {refusal}")


@pytest.mark.parametrize("bad", ["train", "validation"])
def test_a_text_line_without_a_tab_is_refused_naming_its_file_and_line(
    bad: str,
    tmp_path: Path,
    data_dir: Path,
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """The refusal said `line 7 of the train split`, not which file, after a partial
    progress bar of the tab splitting; now it names the file and its line (counted with
    the blank line and the CRLF line ends before it) and is the whole of stderr."""
    good = [f"{w}\t{w[::-1]}" for w in WORDS]
    files = {"train": data_dir / "train.txt", "validation": data_dir / "valid.txt"}
    for split, file in files.items():
        lines = [*good[:3], "", *good[3:5], "no tab h\u00e9re", *good[5:]] if split == bad else good
        file.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    done = _train_from_the_command_line(
        tmp_path, make_subprocess_env(tmp_path), "text", files["train"], files["validation"]
    )
    _assert_refused(
        done,
        tmp_path,
        f"data.data_files.{bad}: line 7 of {files[bad]} has no tab: 'no tab h\u00e9re'; a "
        "text file holds one `source<TAB>target` example per line",
    )


def test_well_formed_csv_rows_are_read_as_pandas_reads_them(
    compose_config: Compose,
    tmp_path: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    stop_after_data: type[Exception],
) -> None:
    """The row check refuses none of these: blank and whitespace-only lines (skipped),
    a quoted comma, a quoted line break, an empty field, CRLF line ends and a last line
    without one."""
    train_file = data_dir / "train.csv"
    rows = ["src,tgt", "", "ab,ba", "  ", '"a,b","b,a"', '"line\nbreak",x', "ab,", "cd,dc"]
    train_file.write_bytes("\r\n".join(rows).encode())
    valid_file = _csv(data_dir / "valid.csv", ["ab,ba"])
    cfg = _files_config(compose_config, "csv", train_file, valid_file)
    with caplog.at_level(logging.INFO, logger=CLEAN_SPLIT_LOG), pytest.raises(stop_after_data):
        train(cfg, tmp_path / "run")
    assert _report(caplog, "train").startswith("train split: kept 4/5 examples; dropped 1 empty;")


def test_extra_fields_on_the_first_row_are_refused_not_taken_as_an_index(
    compose_config: Compose,
    tmp_path: Path,
    data_dir: Path,
    stop_after_data: type[Exception],
) -> None:
    """pandas took the first field of such a row as an index and shifted the others: `ab,ba,x`
    became source 'ba' and target 'x', and every later row's target was empty."""
    good = [f"{w},{w[::-1]}" for w in WORDS]
    train_file = _csv(data_dir / "train.csv", ["ab,ba,x", *good])
    cfg = _files_config(compose_config, "csv", train_file, _csv(data_dir / "valid.csv", good[:4]))
    with pytest.raises(
        ValueError,
        match=rf"^data\.data_files\.train: line 2 of {re.escape(str(train_file))} has 3 fields, "
        r"but its header \(line 1\) has 2: \['src', 'tgt'\]",
    ):
        train(cfg, tmp_path / "run")


def test_a_vocab_size_the_train_split_cannot_fill_is_one_warning_in_each_run(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """`seq2seq-train` with a bpe vocabulary larger than 200 short examples give: the
    smaller size was in an INFO line only. Now one warning names tokenizer.vocab_size, the
    size asked and the size used, in the run that trains the tokenizer and in a later one
    that takes it from the cache."""
    env = make_subprocess_env(tmp_path)
    asked = ("tokenizer=bpe", "tokenizer.vocab_size=3000", "trainer.max_steps=2")
    said = []
    for run in ("trains", "reuses"):
        command = [*train_command(tmp_path, *asked), f"hydra.run.dir={tmp_path / run}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        about_size = [line for line in done.stdout.splitlines() if "tokenizer.vocab_size" in line]
        assert len(about_size) == 1, done.stdout
        said.append(about_size[0].split("] - ", 1)[1])
        assert "[WARNING] - " in about_size[0]
    used = re.fullmatch(
        r"tokenizer\.vocab_size=3000 is more than the train split gives: its texts \(source "
        r"and target\) make only (\d+) bpe pieces \(specials included\), so the tokenizer "
        r"and the model have \1; set tokenizer\.vocab_size=\1 or less to ask for that size",
        said[0],
    )
    assert used is not None, said[0]
    assert said[1] == said[0]
    assert 4 < int(used.group(1)) < 3000
