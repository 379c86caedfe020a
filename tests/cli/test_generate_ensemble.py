"""seq2seq-generate `checkpoint=[a,b]` and seq2seq-evaluate `--checkpoint a b`: ensembles
of tiny trained runs that share a tokenizer (`tokenizer=byte`, the same for every run),
of different seeds and shapes, and the one-line refusal of runs whose tokenizers differ.

Four runs are trained per module (a few seconds each); generation composes the real
`configs/generate.yaml` in-process, except one subprocess that proves the error line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.jobs.ensemble import state_differences
from seq2seq.jobs.generate import generate_from_config

pytestmark = pytest.mark.usefixtures("single_thread")

TRAIN_OVERRIDES = (
    "experiment=toy_reverse",
    "model=tiny",
    "tokenizer=byte",
    "trainer.max_steps=40",
    "trainer.eval_every=40",
    "trainer.log_every=40",
    "trainer.progress=log",
    "schedule.warmup_steps=5",
    "optim.lr=3e-3",
    "data.train_size=200",
    "data.validation_size=8",
    "data.test_size=8",
    "data.min_len=3",
    "data.max_len=6",
    "data.max_tokens=256",
    "model.max_len=16",
)
SOURCES = ["abc", "jihgfedc", "", "bead", "cafe"]

TrainRun = Callable[..., Path]
Compose = Callable[..., DictConfig]


@pytest.fixture(scope="module")
def runs(train_run: TrainRun) -> dict[str, Path]:
    """`a` and `b`: two seeds; `c`: a one-layer decoder; `d`: another tokenizer (char)."""
    return {
        "a": train_run("ensemble_a", *TRAIN_OVERRIDES, "seed=1", tiny=False),
        "b": train_run("ensemble_b", *TRAIN_OVERRIDES, "seed=2", tiny=False),
        "c": train_run(
            "ensemble_c", *TRAIN_OVERRIDES, "seed=1", "model.decoder.layers=1", tiny=False
        ),
        "d": train_run("ensemble_d", *TRAIN_OVERRIDES, "seed=1", "tokenizer=char", tiny=False),
    }


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.txt"
    path.write_text("".join(f"{line}\n" for line in SOURCES), encoding="utf-8")
    return path


def generate(compose_generate: Compose, *overrides: str) -> list[str]:
    return generate_from_config(compose_generate("device=cpu", *overrides))


def test_two_seeds_decode_as_one_ensemble(
    runs: dict[str, Path],
    compose_generate: Compose,
    sources_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = runs["a"], runs["b"]
    output, nbest = tmp_path / "hyps.txt", tmp_path / "pair.nbest"
    with caplog.at_level(logging.INFO, logger="seq2seq.generate"):
        pair = generate(
            compose_generate,
            f"checkpoint=[{a},{b}]",
            f"input={sources_file}",
            f"output={output}",
            f"nbest_output={nbest}",
        )
    assert (
        f"an ensemble of 2 runs (the mean of their probabilities), with the settings of the "
        f"first, {a}" in caplog.text
    )
    assert output.read_text(encoding="utf-8").splitlines() == pair
    assert len(pair) == len(SOURCES) and pair[2] == ""
    assert all(pair[i] for i in (0, 1, 3, 4))
    alone_nbest = tmp_path / "alone.nbest"
    alone = generate(
        compose_generate,
        f"checkpoint={a}",
        f"input={sources_file}",
        f"nbest_output={alone_nbest}",
    )
    # The ensemble's scores are its own, neither run's.
    assert nbest.read_text().splitlines() != alone_nbest.read_text().splitlines()
    listed_once = generate(compose_generate, f"checkpoint=[{a}]", f"input={sources_file}")
    twice = generate(compose_generate, f"checkpoint=[{a},{a}]", f"input={sources_file}")
    assert listed_once == alone
    assert twice == alone


def test_a_run_of_another_shape_joins_and_the_test_split_decodes(
    runs: dict[str, Path], compose_generate: Compose, tmp_path: Path
) -> None:
    a, c = runs["a"], runs["c"]
    refs = tmp_path / "refs.txt"
    hyps = generate(
        compose_generate,
        f"checkpoint=[{a},{c / 'checkpoints' / 'best.pt'}]",
        "split=test",
        "generation=beam",
        "generation.beam_size=3",
        f"references_output={refs}",
        f"output={tmp_path / 'hyps.txt'}",
    )
    assert len(hyps) == len(refs.read_text(encoding="utf-8").splitlines()) > 0


def evaluate(capsys: pytest.CaptureFixture[str], *runs: Path) -> dict[str, float]:
    code = evaluate_main(["--checkpoint", *map(str, runs), "--device", "cpu", "--json"])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_seq2seq_evaluate_scores_an_ensemble(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(runs["a"].parent)
    alone = evaluate(capsys, runs["a"])
    twice = evaluate(capsys, runs["a"], runs["a"])
    assert twice.keys() == alone.keys() >= {"loss", "ppl", "exact_match", "cer"}
    for name in alone:
        assert twice[name] == pytest.approx(alone[name], rel=1e-4, abs=1e-5), name
    pair = evaluate(capsys, runs["a"], runs["b"], runs["c"])
    assert pair.keys() == alone.keys()
    assert pair["loss"] != pytest.approx(alone["loss"])


def test_runs_with_other_tokenizers_are_one_error_line(
    runs: dict[str, Path], sources_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, d = runs["a"], runs["d"]
    output = tmp_path / "hyps.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq.cli.generate",
            f"checkpoint=[{a},{d}]",
            f"input={sources_file}",
            f"output={output}",
            "device=cpu",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        f"seq2seq-generate: error: '{d}' cannot be ensembled with '{a}': their tokenizers "
        f"differ (260 vs 15 ids); an ensemble averages the models' distributions over one "
        "vocabulary: ensemble runs that share their tokenizers (trained on the same data with "
        "the same tokenizer settings)"
    ), done.stderr
    assert not output.exists()
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--checkpoint", str(a), str(d), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert (
        f"seq2seq-evaluate: error: '{d}' cannot be ensembled with '{a}'" in capsys.readouterr().err
    )


def test_usage_errors(runs: dict[str, Path], compose_generate: Compose, sources_file: Path) -> None:
    a, b = runs["a"], runs["b"]
    with pytest.raises(ValueError, match=r"checkpoint=\[\] names no run"):
        generate(compose_generate, "checkpoint=[]", f"input={sources_file}")
    checkpoint = b / "checkpoints" / "best.pt"
    with pytest.raises(
        ValueError, match=rf"output='{checkpoint}' would overwrite checkpoint='{checkpoint}'"
    ):
        generate(
            compose_generate,
            f"checkpoint=[{a},{checkpoint}]",
            f"input={sources_file}",
            f"output={checkpoint}",
        )


def test_state_differences_name_what_differs() -> None:
    tokens = {
        "source": torch.tensor([1, 2], dtype=torch.uint8),
        "target": torch.tensor([1, 2], dtype=torch.uint8),
    }
    assert (
        state_differences(
            {"tokenizer": tokens, "labels": ["x", "y"]}, {"tokenizer": tokens, "labels": ["x", "y"]}
        )
        == []
    )
    assert state_differences(
        {"tokenizer": tokens, "labels": ["x", "y"]}, {"tokenizer": tokens, "labels": ["y", "x"]}
    ) == ["labels differ"]
