"""The seq2seq-evaluate command line."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.atomic import write_text_atomic
from seq2seq.cli.evaluate import main
from seq2seq.evaluation import METRICS, score
from seq2seq.tasks.seq2seq import references_rows

HYPOTHESES = ["the cat sat on the mat", "hello world", "x y z"]
REFS_1 = ["the cat sat on a mat", "hello world", "x y"]
REFS_2 = ["a cat sat on the mat", "hello there world", ""]


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, float]:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_prints_a_table_of_the_default_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    assert main(["--hyp", hyp, "--ref", ref]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["metric", "score"]
    assert [line.split()[0] for line in lines[1:]] == ["bleu", "chrf"]


def test_json_scores_equal_the_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    scores = run_json(capsys, "--hyp", hyp, "--ref", ref, "--metrics", "bleu,wer,ser")
    expected = score(HYPOTHESES, [[r] for r in REFS_1], ["bleu", "wer", "ser"])
    assert scores == pytest.approx(expected)


# Decoded outputs as a tokenizer writes them when the model ends on a space piece or
# repeats one (char tokenizers do): a trailing space, two spaces, and an empty output.
DECODED = ["ni hao ", "zai  jian", "xie xie", "", " hao"]
DECODED_REFERENCES = [["ni hao"], ["zai jian"], ["xie xie", "xie xie ni"], ["dui"], ["hao"]]


def test_training_s_figures_and_seq2seq_evaluate_score_one_set_of_outputs_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training scores its decoded outputs in memory and writes them to predictions.txt;
    seq2seq-evaluate reads that file (stripping each line's end) with the references
    seq2seq-generate writes. CER (and exact match) had differed between the two: one
    definition, whitespace squeezed, makes them agree."""
    every = sorted(METRICS)
    in_memory = score(DECODED, DECODED_REFERENCES, every)
    hyp = tmp_path / "predictions.txt"
    write_text_atomic("\n".join(DECODED) + "\n", hyp)  # as AssembledRun.finish writes it
    ref = write(tmp_path / "test.ref", references_rows(DECODED_REFERENCES))
    from_files = run_json(capsys, "--hyp", str(hyp), "--ref", ref, "--metrics", ",".join(every))
    assert from_files == pytest.approx(in_memory)
    # Corpus-level CER: all edits (the missing "dui" is 3) over all reference characters.
    assert in_memory["cer"] == pytest.approx(100 * 3 / (6 + 8 + 7 + 3 + 3))
    assert in_memory["exact_match"] == pytest.approx(80.0)


def test_repeated_ref_files_equal_tab_separated_alternatives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref_1 = write(tmp_path / "ref1.txt", REFS_1)
    ref_2 = write(tmp_path / "ref2.txt", REFS_2)
    tabbed = write(
        tmp_path / "refs.tsv", [f"{a}\t{b}" for a, b in zip(REFS_1, REFS_2, strict=True)]
    )
    metrics = "bleu,chrf,wer,exact_match"
    from_files = run_json(
        capsys, "--hyp", hyp, "--ref", ref_1, "--ref", ref_2, "--metrics", metrics
    )
    from_tabs = run_json(capsys, "--hyp", hyp, "--ref", tabbed, "--metrics", metrics)
    assert from_files == pytest.approx(from_tabs)
    # The blank third line of ref2 means "no second reference", not an empty one.
    references = [[REFS_1[0], REFS_2[0]], [REFS_1[1], REFS_2[1]], [REFS_1[2]]]
    assert from_files == pytest.approx(
        score(HYPOTHESES, references, ["bleu", "chrf", "wer", "exact_match"])
    )
    assert from_files["exact_match"] == pytest.approx(100 / 3)


def test_mismatched_line_counts_name_both_files_and_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    short = write(tmp_path / "short.txt", REFS_1[:2])
    with pytest.raises(SystemExit) as exit_info:
        main(["--hyp", hyp, "--ref", short])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"--ref {short} has 2 lines but --hyp {hyp} has 3" in error


def test_unknown_metric_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    with pytest.raises(SystemExit):
        main(["--hyp", hyp, "--ref", ref, "--metrics", "bleu,blue"])
    assert "unknown metric 'blue'; valid metrics: accuracy, bleu" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hyp", "nonexist", "--ref", "REF"], "--hyp 'nonexist': no such file"),
        (["--hyp", "HYP", "--ref", "REF", "--ref", "gone.txt"], "--ref 'gone.txt': no such file"),
        (["--hyp", "TMP", "--ref", "REF"], "--hyp 'TMP': is a directory, not a text file"),
    ],
    ids=["hyp", "second-ref", "directory"],
)
def test_a_file_that_cannot_be_read_is_named_with_its_option(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    names = {
        "HYP": write(tmp_path / "hyp.txt", HYPOTHESES),
        "REF": write(tmp_path / "ref.txt", REFS_1),
        "TMP": str(tmp_path),
    }
    with pytest.raises(SystemExit) as exit_info:
        main([names.get(arg, arg) for arg in argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"seq2seq-evaluate: error: {message.replace('TMP', str(tmp_path))}\n" in error
    assert "Errno" not in error


def _stdin(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> None:
    data = "".join(f"{line}\n" for line in lines).encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_dash_reads_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    metrics = ["--metrics", "bleu,wer"]
    from_files = run_json(capsys, "--hyp", hyp, "--ref", ref, *metrics)
    _stdin(monkeypatch, HYPOTHESES)
    assert run_json(capsys, "--hyp", "-", "--ref", ref, *metrics) == from_files
    _stdin(monkeypatch, REFS_1)
    assert run_json(capsys, "--hyp", hyp, "--ref", "-", *metrics) == from_files


def test_stdin_is_read_for_one_input_at_most(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    with pytest.raises(SystemExit) as exit_info:
        main(["--hyp", "-", "--ref", ref, "--ref", "-"])
    assert exit_info.value.code == 2
    assert (
        "more than one input is '-' (--hyp, --ref), but stdin can be read only once"
        in capsys.readouterr().err
    )


def test_a_file_that_is_not_utf8_is_named_with_its_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = tmp_path / "ref.txt"
    ref.write_bytes("\n".join(REFS_1).encode("utf-8") + b"\n\xe9\n")
    with pytest.raises(SystemExit):
        main(["--hyp", hyp, "--ref", str(ref)])
    assert f"--ref {ref} is not valid UTF-8 (first bad byte at offset" in capsys.readouterr().err


def test_a_byte_order_mark_is_not_part_of_the_first_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = tmp_path / "ref.txt"
    ref.write_bytes(b"\xef\xbb\xbf" + "\n".join(HYPOTHESES).encode("utf-8") + b"\n")
    assert run_json(capsys, "--hyp", hyp, "--ref", str(ref), "--metrics", "ser")["ser"] == 0.0
    ref.write_bytes(b"\xef\xbb\xbfab\xe9\n")
    with pytest.raises(SystemExit):
        main(["--hyp", hyp, "--ref", str(ref)])
    assert "first bad byte at offset 5" in capsys.readouterr().err


def test_console_script_is_installed(tmp_path: Path) -> None:
    executable = shutil.which("seq2seq-evaluate", path=str(Path(sys.executable).parent))
    assert executable is not None, "reinstall the package: pip install -e ."
    hyp = write(tmp_path / "hyp.txt", HYPOTHESES)
    ref = write(tmp_path / "ref.txt", REFS_1)
    completed = subprocess.run(
        [executable, "--hyp", hyp, "--ref", ref, "--metrics", "ser", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(completed.stdout) == pytest.approx({"ser": 200 / 3})
