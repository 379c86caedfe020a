"""Reading what seq2seq-evaluate scores: hypothesis and reference files (or stdin), one
example per line, several references of one example TAB-separated; and metric names."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from seq2seq.evaluation.metrics import METRICS, get_metric
from seq2seq.utf8 import decode_utf8

STDIN = "-"


def read_bytes(source: str | Path, *, option: str) -> bytes:
    """The bytes of a file, or of stdin for ``-``; an unreadable file is named with its
    option."""
    name = str(source)
    if name == STDIN:
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{option} {name!r}: no such file") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{option} {name!r}: is a directory, not a text file") from None
    except OSError as error:
        raise OSError(f"{option} {name!r}: {error.strerror or error}") from error


def read_lines(source: str | Path, *, option: str) -> list[str]:
    """The lines of a UTF-8 text file (``-``: stdin), trailing whitespace removed as
    sacrebleu's CLI does.

    Only ``\\n`` ends a line: ``str.splitlines`` would also split on form feeds and
    Unicode separators that may occur inside a sentence. Stripping the trailing
    whitespace keeps an invisible space (or a Windows ``\\r``) from failing exact match.
    """
    text = decode_utf8(read_bytes(source, option=option), what=f"{option} {source}")
    if text == "":
        return []
    text = text.removesuffix("\n")
    return [line.rstrip() for line in text.split("\n")]


def split_alternatives(line: str) -> list[str]:
    """The non-empty TAB-separated alternative references on one line."""
    return [field for field in line.split("\t") if field != ""]


def read_references(
    hyp_path: str | Path, hyp_count: int, ref_paths: Sequence[str | Path]
) -> list[list[str]]:
    """Merge reference files into one list of alternatives per example.

    Every file is parallel to the hypotheses (one line per example); alternatives from
    all files and all TAB-separated fields of a line are pooled. A file with the wrong
    line count raises ValueError naming both files and both counts.
    """
    references: list[list[str]] = [[] for _ in range(hyp_count)]
    for ref_path in ref_paths:
        lines = read_lines(ref_path, option="--ref")
        if len(lines) != hyp_count:
            raise ValueError(
                f"--ref {ref_path} has {len(lines)} lines but --hyp {hyp_path} has "
                f"{hyp_count}; reference files must be parallel to the hypotheses "
                "(one line per example, alternatives separated by a TAB)"
            )
        for refs, line in zip(references, lines, strict=True):
            refs.extend(split_alternatives(line))
    # A blank line (or field) next to real references elsewhere means "no reference
    # here", so reference files of unequal coverage work; only an example with no
    # reference text at all is scored against the empty string.
    return [refs or [""] for refs in references]


def parse_metric_names(value: str) -> list[str]:
    """Split ``bleu,chrf,wer`` into names, each checked against the registry."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise ValueError(
            f"--metrics {value!r} names no metric; valid: {', '.join(sorted(METRICS))}"
        )
    for name in names:
        get_metric(name)
    return names


def check_one_stdin(hyp: str, refs: Sequence[str]) -> None:
    """Stdin can be read once: at most one of the inputs is ``-``."""
    readers = [
        option
        for option, name in [("--hyp", hyp), *(("--ref", ref) for ref in refs)]
        if name == STDIN
    ]
    if len(readers) > 1:
        raise ValueError(
            f"more than one input is '-' ({', '.join(readers)}), but stdin can be read only "
            "once; give the others as files"
        )
