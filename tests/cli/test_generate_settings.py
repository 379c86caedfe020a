"""seq2seq-generate decodes with the run's own generation settings, and what is typed on
the command line applies on top: `generation=<group>` replaces them, `generation.<key>=`
alone changes that key.

One tiny run is trained per module with generation settings of its own (beam 3, length
penalty 0.3, as a recipe sets them, and short outputs, max_len_a=0.5 and max_len_b=2, so
that its outputs differ from those of generate.yaml's greedy default).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from seq2seq.config.generate import decoding_generation
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.store import CONFIG_MODULE
from seq2seq.jobs.generate import generate_from_config

pytestmark = pytest.mark.usefixtures("single_thread")

TrainRun = Callable[..., Path]
RUN_GENERATION = (
    "generation=beam",
    "generation.beam_size=3",
    "generation.length_penalty=0.3",
    "generation.max_len_a=0.5",
    "generation.max_len_b=2",
)
# What the run decodes with: its typed settings over the schema's defaults.
RUN_SETTINGS = GenerationConfig(
    strategy="beam", beam_size=3, length_penalty=0.3, max_len_a=0.5, max_len_b=2
)


@pytest.fixture(scope="module")
def run_dir(train_run: TrainRun) -> Path:
    return train_run(
        "generate_settings", "experiment=toy_reverse", "trainer.max_steps=6", *RUN_GENERATION
    )


def generate_cli(run_dir: Path, *typed: str) -> list[str]:
    """`seq2seq-generate checkpoint=<run> split=test device=cpu *typed` as the CLI calls it:
    the typed overrides are the command line."""
    command_line = [f"checkpoint={run_dir}", "split=test", "device=cpu", *typed]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("generate", overrides=command_line)
    return generate_from_config(cfg, command_line=command_line)


def predictions(run_dir: Path) -> list[str]:
    return (run_dir / "predictions.txt").read_text(encoding="utf-8").removesuffix("\n").split("\n")


def greedy(run_dir: Path) -> list[str]:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("generate", overrides=[f"checkpoint={run_dir}", "split=test", "device=cpu"])
    return generate_from_config(cfg)  # a library call: the composed node (greedy)


@pytest.mark.parametrize(
    ("command_line", "expected"),
    [
        (None, GenerationConfig()),
        ([], RUN_SETTINGS),
        (["checkpoint=x", "split=test"], RUN_SETTINGS),
        (["generation.beam_size=1"], replace(RUN_SETTINGS, beam_size=1)),
        (
            ["++generation.nbest=2", "generation.min_len=2"],
            replace(RUN_SETTINGS, nbest=2, min_len=2),
        ),
        (["generation=greedy"], GenerationConfig()),
        (["generation=beam"], GenerationConfig(strategy="beam", length_penalty=1.0)),
        (
            ["generation.beam_size=4", "generation=beam"],
            GenerationConfig(strategy="beam", beam_size=4, length_penalty=1.0),
        ),
    ],
    ids=[
        "library",
        "nothing-typed",
        "other-keys",
        "one-key",
        "two-keys",
        "greedy",
        "beam",
        "beam+key",
    ],
)
def test_typed_settings_apply_on_top_of_the_runs(
    command_line: list[str] | None, expected: GenerationConfig
) -> None:
    """`composed` is what Hydra composed from the same command line."""
    typed = [o for o in command_line or [] if o.lstrip("+").startswith("generation")]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("generate", overrides=typed)
    composed = GenerationConfig(**cfg.generation)
    assert decoding_generation(RUN_SETTINGS, composed, command_line) == expected


def test_split_with_nothing_typed_reproduces_the_runs_predictions(run_dir: Path) -> None:
    decoded = generate_cli(run_dir)
    assert decoded == predictions(run_dir)
    # Else this test could not tell the run's settings from the generate.yaml default.
    assert decoded != greedy(run_dir)


def test_one_typed_key_changes_only_that_key(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="seq2seq.generate"):
        narrow = generate_cli(run_dir, "generation.beam_size=1")
    assert "decoding differs from the run's generation settings: beam_size=1 (run: 3)" in (
        caplog.text
    )
    assert "length_penalty" not in caplog.text and "strategy" not in caplog.text
    assert len(narrow) == len(predictions(run_dir))


def test_a_typed_group_replaces_the_runs_settings(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="seq2seq.generate"):
        assert generate_cli(run_dir, "generation=greedy") == greedy(run_dir)
    assert "strategy='greedy' (run: 'beam')" in caplog.text


def test_a_run_setting_that_a_typed_strategy_does_not_read_says_what_to_type(
    run_dir: Path,
) -> None:
    with pytest.raises(
        ValueError,
        match=r"generation\.beam_size=3 is invalid; only strategy='beam' reads it.*"
        r"\(decoding starts from the run's generation settings; generation=<group> starts",
    ):
        generate_cli(run_dir, "generation.strategy=greedy")


def test_the_cli_passes_what_was_typed_and_a_multirun_job_writes_in_its_own_dir(
    run_dir: Path, tmp_path: Path
) -> None:
    """The real entry point: job 0 types the run's own beam size, so it reproduces
    predictions.txt only if the other settings are the run's; job 1 changes one key. A
    relative output goes into each job's dir, never into the working directory."""
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq.cli.generate",
            "-m",
            f"checkpoint={run_dir}",
            "split=test",
            "device=cpu",
            "generation.beam_size=3,1",
            "output=test.hyp",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "test.hyp").exists()
    job_0, job_1 = (sweep / str(n) / "test.hyp" for n in (0, 1))
    assert job_0.read_text(encoding="utf-8").removesuffix("\n").split("\n") == predictions(run_dir)
    assert job_1.is_file()
    differences = [line for line in done.stderr.splitlines() if "decoding differs" in line]
    assert len(differences) == 1 and differences[0].endswith("beam_size=1 (run: 3)"), differences
