"""seq2seq-generate on a tiny trained run: from a file, stdin and the run's test split,
n-best output, the entry point as a subprocess, and the usage errors.

One run is trained per module (about 10 s); every generation call composes the real
`configs/generate.yaml` in-process, except one subprocess that proves the entry point.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seq2seq.config.generate import GenerateConfig
from seq2seq.config.store import CONFIG_MODULE
from seq2seq.evaluation import files as evaluate_cli
from seq2seq.evaluation.scoring import score
from seq2seq.jobs import generate_files as prediction_files
from seq2seq.jobs.generate import decoding_precision, generate_from_config
from seq2seq.jobs.generate_files import in_job_dir
from seq2seq.tasks.seq2seq import references_rows

# Tiny models on a loaded two-core machine: a second intra-op thread only waits.
pytestmark = pytest.mark.usefixtures("single_thread")

# Enough steps on the reverse task for the outputs to differ from source to source, so
# that order and batching mistakes show.
TRAIN_OVERRIDES = (
    "experiment=toy_reverse",
    "model=tiny",
    "trainer.max_steps=100",
    "trainer.eval_every=100",
    "trainer.log_every=100",
    "trainer.progress=log",
    "schedule.warmup_steps=5",
    "optim.lr=3e-3",
    "data.train_size=200",
    "data.validation_size=16",
    "data.test_size=16",
    "data.min_len=3",
    "data.max_len=8",
    "data.max_tokens=256",
)
# The figures toy_reverse records (its trainer.metrics).
METRICS = ["exact_match", "cer"]
# Sources of several lengths, with an empty line and a whitespace-only one inside.
SOURCES = ["abc", "jihgfedc", "", "bead", "cafe", "   ", "ggghhhiii", "d"]

Generate = Callable[..., list[str]]
TrainRun = Callable[..., Path]


@pytest.fixture(scope="module")
def run_dir(train_run: TrainRun) -> Path:
    return train_run("generate", *TRAIN_OVERRIDES, tiny=False)


def compose_generate(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("generate", overrides=list(overrides))


@pytest.fixture
def run_generate(run_dir: Path) -> Generate:
    """`run_generate(*overrides)` with `checkpoint=<the run>` and the CPU preset."""

    def generate(*overrides: str) -> list[str]:
        return generate_from_config(
            compose_generate(f"checkpoint={run_dir}", "device=cpu", *overrides)
        )

    return generate


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.txt"
    path.write_text("".join(f"{line}\n" for line in SOURCES), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").removesuffix("\n").split("\n")


def test_file_in_batches_matches_one_source_at_a_time(
    run_generate: Generate, sources_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "hyps.txt"
    batched = run_generate(f"input={sources_file}", f"output={output}")
    alone = run_generate(f"input={sources_file}", "max_tokens=1", f"output={tmp_path / 'b'}")
    assert read_lines(output) == batched == alone
    assert len(batched) == len(SOURCES)
    assert batched[2] == batched[5] == ""
    assert all(batched[i] for i in (0, 1, 3, 4, 6, 7))
    assert len(set(batched)) > 3, batched  # the run is trained enough to tell sources apart
    assert sorted(p.name for p in output.parent.iterdir()) == ["hyps.txt"]  # no temp file left


def _stdin(data: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_stdin_to_stdout(
    run_generate: Generate,
    sources_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = run_generate(f"input={sources_file}", "output=-")
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", _stdin(sources_file.read_bytes()))
    assert run_generate("input=-", "output=-", "precision=bf16") is not None
    out = capsys.readouterr().out
    assert out.count("\n") == len(SOURCES)
    monkeypatch.setattr(sys, "stdin", _stdin(sources_file.read_bytes()))
    assert run_generate("input=-") == expected
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in expected)
    # No input and no split: stdin, as `echo word | seq2seq-generate checkpoint=...` reads.
    monkeypatch.setattr(sys, "stdin", _stdin(sources_file.read_bytes()))
    assert run_generate() == expected
    assert capsys.readouterr().out == "".join(f"{line}\n" for line in expected)


def test_test_split_reproduces_the_runs_predictions(
    run_generate: Generate, run_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "test.hyp"
    predictions = run_generate("split=test", f"output={output}")
    assert read_lines(run_dir / "predictions.txt") == predictions == read_lines(output)


def test_split_references_let_seq2seq_evaluate_reproduce_the_runs_test_figures(
    run_generate: Generate, run_dir: Path, tmp_path: Path
) -> None:
    hyp, ref = tmp_path / "test.hyp", tmp_path / "test.ref"
    run_generate("split=test", f"output={hyp}", f"references_output={ref}")
    assert len(read_lines(ref)) == len(read_lines(hyp)) == 16
    figures = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test"]
    hypotheses = evaluate_cli.read_lines(hyp, option="--hyp")
    scores = score(hypotheses, evaluate_cli.read_references(hyp, len(hypotheses), [ref]), METRICS)
    for name in METRICS:
        assert scores[name] == pytest.approx(figures[name])


def test_references_rows_put_alternatives_on_one_line_and_refuse_tabs() -> None:
    assert references_rows([["HH AH", "HH EH"], ["K AE T"]]) == ["HH AH\tHH EH", "K AE T"]
    with pytest.raises(ValueError, match=r"reference 'a\\tb' of source 1 holds a TAB"):
        references_rows([["x"], ["a\tb"]])


def test_nbest_output_with_beam(run_generate: Generate, sources_file: Path, tmp_path: Path) -> None:
    nbest = tmp_path / "nbest.tsv"
    best = run_generate(
        f"input={sources_file}",
        f"output={tmp_path / 'hyps'}",
        f"nbest_output={nbest}",
        "generation=beam",
        "generation.beam_size=4",
        "generation.nbest=3",
    )
    rows = [line.split("\t") for line in read_lines(nbest)]
    assert all(len(row) == 4 for row in rows)
    non_empty = [i for i, line in enumerate(SOURCES) if line.strip()]
    assert [(int(i), int(r)) for i, r, _, _ in rows] == [
        (i, r) for i in non_empty for r in range(3)
    ]
    for index in non_empty:
        entries = [row for row in rows if int(row[0]) == index]
        scores = [float(score) for _, _, score, _ in entries]
        assert scores == sorted(scores, reverse=True)
        assert entries[0][3] == best[index]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (
            ("input=SOURCES", "split=test"),
            ValueError,
            r"set one of input .* and split .*, not both",
        ),
        (("split=train",), ValueError, r"split='train' is unknown; choose one of \['validation'"),
        (
            ("input=SOURCES", "precision=fp16", "device=cpu"),
            ValueError,
            r"precision='fp16' needs a CUDA device, but the device is cpu",
        ),
        (("input=missing.txt",), FileNotFoundError, r"input='missing.txt' does not exist"),
        (("input=TMP",), IsADirectoryError, r"input='TMP' is a directory; give a text file"),
        (
            ("input=SOURCES", "references_output=refs.txt"),
            ValueError,
            r"references_output='refs.txt' needs split=validation or split=test",
        ),
        (
            ("input=SOURCES", "generation.nbest=2"),
            ValueError,
            r"generation\.nbest=2 is invalid; .* use strategy='beam'",
        ),
    ],
)
def test_usage_errors(
    run_generate: Generate,
    sources_file: Path,
    tmp_path: Path,
    overrides: tuple[str, ...],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message.replace("TMP", str(tmp_path))):
        run_generate(
            *(
                o.replace("SOURCES", str(sources_file)).replace("TMP", str(tmp_path))
                for o in overrides
            )
        )


@pytest.mark.parametrize(
    ("overrides", "message", "kept"),
    [
        (("output=SOURCES",), r"output='SOURCES' would overwrite input='SOURCES'", "SOURCES"),
        (
            ("output=CHECKPOINT",),
            r"output='CHECKPOINT' would overwrite checkpoint='RUN'",
            "CHECKPOINT",
        ),
        (
            ("output=TMP/out.txt", "nbest_output=TMP/out.txt"),
            r"nbest_output='TMP/out.txt' is also output='TMP/out.txt'; give each output its own",
            "TMP/out.txt",
        ),
        (("output=TMP",), r"output='TMP' is a directory; give a file path or '-'", None),
        (
            ("output=-", "nbest_output=-"),
            r"nbest_output='-' is also output='-'",
            None,
        ),
        (
            ("output=TMP/out.txt", "nbest_output=TMP/out.txt/nb.txt"),
            r"nbest_output='TMP/out.txt/nb.txt': TMP/out.txt is not a directory",
            "TMP/out.txt",
        ),
        (
            ("output=TMP/out.txt/deeper/hyps.txt",),
            r"output='TMP/out.txt/deeper/hyps.txt': TMP/out.txt is not a directory",
            "TMP/out.txt",
        ),
    ],
    ids=["input", "checkpoint", "two-outputs", "directory", "two-stdout", "nbest", "deeper"],
)
def test_an_output_never_overwrites_what_is_there(
    run_generate: Generate,
    run_dir: Path,
    sources_file: Path,
    tmp_path: Path,
    overrides: tuple[str, ...],
    message: str,
    kept: str | None,
) -> None:
    """Refused before decoding, so nothing is written: not the input, not the checkpoint,
    not an earlier output that a second option names again."""
    names = {
        "CHECKPOINT": str(run_dir / "checkpoints" / "best.pt"),
        "SOURCES": str(sources_file),
        "TMP": str(tmp_path),
        "RUN": str(run_dir),
    }

    def fill(text: str) -> str:
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    (tmp_path / "out.txt").write_text("earlier output\n", encoding="utf-8")
    before = Path(fill(kept)).read_bytes() if kept else None
    with pytest.raises(ValueError, match=re.escape(fill(message)).replace(r"\'", "'")):
        run_generate(f"input={sources_file}", *(fill(o) for o in overrides))
    if kept:
        assert Path(fill(kept)).read_bytes() == before


def test_a_bad_destination_is_refused_before_the_model_is_loaded(
    sources_file: Path, tmp_path: Path
) -> None:
    """The checkpoint is corrupt: only an error found before loading it can be the output's."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 cut short")
    taken = tmp_path / "taken.txt"
    taken.write_text("a file, not a directory\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"^nbest_output='.*taken\.txt/nb\.txt': .*taken\.txt is not"
    ):
        generate_from_config(
            compose_generate(
                f"checkpoint={corrupt}",
                f"input={sources_file}",
                f"output={tmp_path / 'hyps.txt'}",
                f"nbest_output={taken / 'nb.txt'}",
            )
        )
    assert not (tmp_path / "hyps.txt").exists()


def test_a_write_error_names_its_option(
    run_generate: Generate, sources_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = prediction_files.write_text_atomic

    def disk_full_for_nbest(text: str, path: Path) -> None:
        if path.name == "nb.txt":
            raise OSError(28, "No space left on device")
        write(text, path)

    monkeypatch.setattr(prediction_files, "write_text_atomic", disk_full_for_nbest)
    nbest = tmp_path / "nb.txt"
    with pytest.raises(
        OSError, match=rf"^nbest_output='{nbest}': cannot write it \(.*No space left"
    ):
        run_generate(f"input={sources_file}", f"output={tmp_path / 'h'}", f"nbest_output={nbest}")


def _corrupt_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint that fails to load: only a refusal made before loading it is seen."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 cut short")
    return corrupt


@pytest.mark.parametrize(
    ("flags", "reason"),
    [(os.ST_RDONLY, "read-only file system"), (0, "permission denied")],
    ids=["read-only", "permission"],
)
@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("hyps.txt", "cannot write in the directory UNWRITABLE"),
        ("earlier.txt", "cannot write in the directory UNWRITABLE"),
        ("new/deeper/hyps.txt", "cannot make the directory UNWRITABLE/new/deeper in UNWRITABLE"),
    ],
    ids=["new-file", "existing-file", "new-directory"],
)
def test_an_unwritable_output_says_why(
    sources_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: int,
    reason: str,
    output: str,
    problem: str,
) -> None:
    """A read-only file system was reported as `permission denied`. Root writes past
    permission bits and mounting needs privileges, so the file system's answers about the
    one directory are simulated (the next test mounts one where it can)."""
    unwritable = tmp_path / "unwritable"
    unwritable.mkdir()
    (unwritable / "earlier.txt").write_text("earlier output\n", encoding="utf-8")
    access, statvfs = os.access, os.statvfs

    def fake_access(path: object, mode: int, **kwargs: object) -> bool:
        return Path(str(path)) != unwritable and access(path, mode, **kwargs)  # type: ignore[arg-type]

    def fake_statvfs(path: object) -> object:
        if Path(str(path)) == unwritable:
            return SimpleNamespace(f_flag=flags)
        return statvfs(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", fake_access)
    monkeypatch.setattr(os, "statvfs", fake_statvfs)
    destination = unwritable / output
    expected = f"output='{destination}': {problem} ({reason}); choose another file"
    with pytest.raises(
        ValueError, match=f"^{re.escape(expected.replace('UNWRITABLE', str(unwritable)))}$"
    ):
        generate_from_config(
            compose_generate(
                f"checkpoint={_corrupt_checkpoint(tmp_path)}",
                f"input={sources_file}",
                f"output={destination}",
            )
        )


def test_an_output_on_a_read_only_file_system_from_the_command_line(
    sources_file: Path, tmp_path: Path
) -> None:
    """`seq2seq-generate` with its output on a read-only tmpfs, mounted in a private mount
    namespace (`unshare`, as root or in a user namespace) that ends with the command: one
    line that says read-only file system, exit status 2."""
    mount_point = tmp_path / "read-only"
    mount_point.mkdir()
    output = mount_point / "hyps.txt"
    generate = [
        sys.executable,
        "-m",
        "seq2seq.cli.generate",
        f"checkpoint={_corrupt_checkpoint(tmp_path)}",
        f"input={sources_file}",
        f"output={output}",
    ]
    mounted = f"mount -t tmpfs -o ro,size=64k tmpfs {shlex.quote(str(mount_point))}"
    script = f"{mounted} || exit 99; exec {shlex.join(generate)}"
    for unshare in (["unshare", "-m"], ["unshare", "-rm"]):
        try:
            done = subprocess.run(
                [*unshare, "sh", "-c", script],
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                timeout=120,
            )
        except FileNotFoundError:
            pytest.skip("no unshare command")
        if done.returncode != 99 and "unshare:" not in done.stderr:
            break
    else:
        pytest.skip(f"cannot mount a file system here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"seq2seq-generate: error: output='{output}': cannot write in the directory "
        f"{mount_point} (read-only file system); choose another file"
    ]


def fifo_reader(path: Path) -> Callable[[], str]:
    """Read the FIFO `path` to its end in a thread; the returned call waits for the text."""
    received: list[str] = []
    thread = threading.Thread(
        target=lambda: received.append(path.read_text(encoding="utf-8")), daemon=True
    )
    thread.start()

    def text() -> str:
        thread.join(timeout=30)
        assert not thread.is_alive(), f"nothing opened {path} for writing"
        return received[0]

    return text


def test_a_symlinked_output_keeps_its_link_and_a_fifo_is_written_in_place(
    run_generate: Generate, sources_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "kept" / "hyps.txt"
    target.parent.mkdir()
    target.write_text("earlier output\n", encoding="utf-8")
    link = tmp_path / "hyps.txt"
    link.symlink_to(target)
    expected = run_generate(f"input={sources_file}", f"output={link}")
    assert link.is_symlink() and link.resolve() == target
    assert read_lines(target) == expected
    assert sorted(p.name for p in target.parent.iterdir()) == ["hyps.txt"]

    fifo = tmp_path / "hyps.fifo"
    os.mkfifo(fifo)
    text = fifo_reader(fifo)
    run_generate(f"input={sources_file}", f"output={fifo}")
    assert text() == "".join(f"{line}\n" for line in expected)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_input_from_a_fifo_or_a_shells_process_substitution(
    run_generate: Generate, sources_file: Path, tmp_path: Path
) -> None:
    """`input=<(cut -f1 file)` is a /dev/fd/N path to a pipe: not a regular file."""
    expected = run_generate(f"input={sources_file}")
    data = sources_file.read_bytes()
    fifo = tmp_path / "sources.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,), daemon=True)
    writer.start()
    assert run_generate(f"input={fifo}") == expected
    writer.join(timeout=30)
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    try:
        assert run_generate(f"input=/dev/fd/{read}") == expected
    finally:
        os.close(read)


def test_a_multirun_job_writes_relative_outputs_in_its_own_dir(tmp_path: Path) -> None:
    """Every job of `-m` gets the same output values; a relative path lands in the job's
    own dir, and an absolute file path, which the jobs would share, is refused."""
    job = tmp_path / "sweep" / "3"
    cfg = GenerateConfig(checkpoint="run", output="hyps.txt", nbest_output="-")
    moved = in_job_dir(replace(cfg, references_output="sub/refs.txt"), job)
    assert (moved.output, moved.nbest_output, moved.references_output) == (
        str(job / "hyps.txt"),
        "-",
        str(job / "sub" / "refs.txt"),
    )
    shared = tmp_path / "shared.txt"
    with pytest.raises(
        ValueError, match=rf"^output='{shared}': every job of the multirun would write this one"
    ):
        in_job_dir(replace(cfg, output=str(shared)), job)
    fifo = tmp_path / "hyps.fifo"
    os.mkfifo(fifo)
    assert in_job_dir(replace(cfg, output=str(fifo)), job).output == str(fifo)


def test_input_that_is_not_utf8_or_has_nothing_to_decode(
    run_generate: Generate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _stdin(b"abc\n\xe9t\xe9\n"))
    with pytest.raises(
        ValueError, match=r"input='-' is not valid UTF-8 \(first bad byte at offset 4\)"
    ):
        run_generate("input=-")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"input='.*blank\.txt' has no line to decode"):
        run_generate(f"input={blank}")


def test_input_of_mostly_unknown_tokens_is_warned_about(
    run_generate: Generate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "odd.txt"
    path.write_text("abc\n#%&@\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="seq2seq.generate"):
        run_generate(f"input={path}")
    assert "1 input line(s) are half or more unknown tokens (first: line 2)" in caplog.text


def test_a_setting_of_another_strategy_is_refused(
    run_generate: Generate, sources_file: Path
) -> None:
    with pytest.raises(
        ValueError,
        match=r"generation\.top_k=5 is invalid; only strategy='sample' reads it, but "
        r"generation\.strategy='beam'",
    ):
        run_generate(f"input={sources_file}", "generation=beam", "generation.top_k=5")


def test_overlong_line_names_its_number_and_the_limit(
    run_generate: Generate, tmp_path: Path
) -> None:
    path = tmp_path / "long.txt"
    path.write_text("abc\n" + "a" * 129 + "\nabc\n" + "b" * 200 + "\n", encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=r"input line 2 has 13\d source tokens, more than model\.max_len=128 \(1 more",
    ):
        run_generate(f"input={path}")


def test_checkpoint_errors(sources_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint is required"):
        generate_from_config(compose_generate(f"input={sources_file}"))
    with pytest.raises(ValueError, match=r"^beam_size is not a setting .*'generation'"):
        generate_from_config(compose_generate("checkpoint=x", "+beam_size=4"))
    with pytest.raises(FileNotFoundError, match=r"checkpoint='.*nowhere' does not exist"):
        generate_from_config(
            compose_generate(f"checkpoint={tmp_path / 'nowhere'}", f"input={sources_file}")
        )
    with pytest.raises(FileNotFoundError, match=r"is a directory without checkpoints/best\.pt"):
        generate_from_config(compose_generate(f"checkpoint={tmp_path}", f"input={sources_file}"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        generate_from_config(compose_generate(f"checkpoint={corrupt}", f"input={sources_file}"))
    config = tmp_path / "config.yaml"  # a run's other files are not checkpoints
    config.write_text("model:\n  d_model: 8\n")
    with pytest.raises(ValueError, match=r"config\.yaml is not a checkpoint"):
        generate_from_config(compose_generate(f"checkpoint={config}", f"input={sources_file}"))


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_named(
    run_dir: Path, sources_file: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    checkpoint["model"].pop(next(iter(checkpoint["model"])))
    edited = tmp_path / "edited.pt"
    torch.save(checkpoint, edited)
    with pytest.raises(ValueError, match=rf"checkpoint {edited}: its weights do not fit the model"):
        generate_from_config(compose_generate(f"checkpoint={edited}", f"input={sources_file}"))


def test_module_entry_point(run_dir: Path, sources_file: Path, tmp_path: Path) -> None:
    """`python -m seq2seq.cli.generate` with stdin/stdout writes hypotheses only and leaves
    no Hydra output behind; a usage error exits 2 with one line."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    command = [sys.executable, "-m", "seq2seq.cli.generate", f"checkpoint={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, "input=-", "device=cpu"],
        input=sources_file.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == len(SOURCES)
    assert "decoded 8 inputs" in done.stderr
    assert list(workdir.iterdir()) == []
    failed = subprocess.run(
        [*command, "split=train"], capture_output=True, text=True, cwd=workdir, env=env
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().endswith(
        "seq2seq-generate: error: split='train' is unknown; choose one of ['validation', 'test']"
    )


def test_decoding_takes_the_runs_precision_unless_told() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert decoding_precision(None, "bf16", cpu) == "bf16"
    assert decoding_precision(None, "fp16", cuda) == "fp16"
    assert decoding_precision(None, "fp16", cpu) == "fp32"
    assert decoding_precision("fp32", "bf16", cpu) == "fp32"


def test_a_split_of_file_data_reads_only_that_split_s_file(
    train_run: TrainRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """split=test needs the run's test file, not its training file (which may be gone,
    or huge); a missing test file is named as the run's config names it."""
    data = tmp_path / "data"
    data.mkdir()
    words = ["abc", "bead", "cafe", "dig", "egg", "fig", "hide", "jab"]
    for name, chosen in (("train", words * 4), ("validation", words[:4]), ("test", words[4:])):
        lines = [json.dumps({"source": w, "target": w[::-1]}) for w in chosen]
        (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    files = [
        f"data.data_files.{name}={data / name}.jsonl" for name in ("train", "validation", "test")
    ]
    run = train_run(
        "file_data",
        *TRAIN_OVERRIDES[:1],
        "model=tiny",
        "trainer.max_steps=2",
        "trainer.eval_every=2",
        "schedule.warmup_steps=0",
        "data.builtin=null",
        "data.path=json",
        *files,
        tiny=False,
    )
    (data / "train.jsonl").unlink()
    monkeypatch.chdir(tmp_path)
    predictions = generate_from_config(
        compose_generate(f"checkpoint={run}", "split=test", f"output={tmp_path / 'hyp.txt'}")
    )
    assert predictions == (run / "predictions.txt").read_text().splitlines()
    (data / "test.jsonl").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"split='test' reads the data the run's config names, from the "
        r"working directory: data\.data_files\.test=",
    ):
        generate_from_config(compose_generate(f"checkpoint={run}", "split=test"))
