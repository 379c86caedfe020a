"""End-to-end runs of seq2seq-train's pipeline on tiny configs, in-process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.jobs.train import train

Compose = Callable[..., DictConfig]


def test_trains_on_local_json_lines(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "my"
    data.mkdir()
    for split, words in {
        "train": ["abc", "hello", "world", "seq"] * 10 + [""],
        "valid": ["tide", "cab"],
        "test": ["bat", "", "sea"],
    }.items():
        with open(data / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for word in words:
                handle.write(json.dumps({"src": word, "tgt": word[::-1], "other": 1}) + "\n")
    cfg = compose_config(
        "data.path=json",
        f"data.data_files.train={data / 'train.jsonl'}",
        f"data.data_files.validation={data / 'valid.jsonl'}",
        f"data.data_files.test={data / 'test.jsonl'}",
        "data.source=src",
        "data.target=tgt",
        "tokenizer=char",
    )
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="seq2seq.data"):
        train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["stopped"] == "max_steps"
    assert "exact_match" in metrics["final_validation"]
    # What each split's figures cover: the empty examples were dropped.
    assert {
        role: (r["total"], r["kept"], r["dropped_empty"]) for role, r in metrics["data"].items()
    } == {
        "train": (41, 40, 1),
        "validation": (2, 2, 0),
        "test": (3, 2, 1),
    }
    # Beside the test figures, the test examples they leave out; one warning line says so
    # (a held-out split only: training drops its empty examples with an INFO line).
    assert metrics["test_unscored"] == 1
    assert (run / "predictions.txt").read_text().count("\n") == 2
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "seq2seq.data"
    ]
    assert warnings == [
        "1 of 3 test examples are empty (no source or no target text) and are not scored: "
        "the test figures cover the other 2"
    ]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "step_00000002.pt",
        "step_00000004.pt",
    ]
    assert (run / "tokenizer" / "source.model").is_file()
    assert (run / "config.yaml").read_text().count("path: json") == 1


def test_tensorboard_holds_scalars_text_and_hparams(
    compose_config: Compose, tmp_path: Path
) -> None:
    cfg = compose_config("experiment=toy_reverse")
    run = tmp_path / "run"
    train(cfg, run)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_sec",
        "valid/loss",
        "valid/ppl",
        "valid/exact_match",
        "valid/cer",
        "test/exact_match",
    ):
        assert tag in scalars, (tag, sorted(scalars))
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    text = set(events.Tags()["tensors"])
    assert {"config/text_summary", "valid/samples/text_summary"} <= text
    sample = events.Tensors("valid/samples/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| input | reference | prediction |" in sample
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins
    assert (run / "predictions.txt").read_text().count("\n") == 16


def test_outputs_stopped_by_the_length_limit_are_counted_and_named(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every output is held to 3 tokens (eos forbidden before, forced at 3): validation
    counts them in its figures (log line, TensorBoard, metrics.json), the test split too,
    with one warning line naming the setting to raise."""
    cfg = compose_config("experiment=toy_reverse", "generation.max_len=3", "generation.min_len=3")
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    outputs = (run / "predictions.txt").read_text().count("\n")
    assert metrics["test"]["at_length_limit"] == outputs == 16
    assert metrics["final_validation"]["at_length_limit"] == metrics["data"]["validation"]["kept"]
    validation_lines = [
        r.getMessage() for r in caplog.records if "| validation |" in r.getMessage()
    ]
    assert validation_lines and all("at_length_limit" in line for line in validation_lines)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cut = [line for line in warnings if "stopped at the length limit" in line]
    assert cut == [
        "16 of 16 test outputs stopped at the length limit (eos forced there; they may be cut "
        "short): raise generation.max_len=3 (the model takes up to 127)"
    ]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("test/at_length_limit")] == [16.0]
    assert {e.step for e in events.Scalars("valid/at_length_limit")} == {2, 4}


def test_a_run_removes_the_temporary_files_of_a_killed_writer(
    compose_config: Compose, tmp_path: Path
) -> None:
    """A process killed while writing a checkpoint (or metrics.json) left its temporary
    file; the next run in that dir removes it (see tests/cli/test_atomic_writes.py)."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    run = tmp_path / "run"
    orphans = [
        run / "checkpoints" / f".step_00000009.pt.tmp-{pid}",
        run / f".metrics.json.tmp-{pid}",
    ]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"half")
    train(
        compose_config("experiment=toy_reverse", "trainer.max_steps=2", "data.splits.test=null"),
        run,
    )
    assert not any(orphan.exists() for orphan in orphans)
    assert (run / "metrics.json").is_file()


def test_second_run_reuses_the_cached_tokenizer(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_config("experiment=toy_reverse", "trainer.max_steps=1")
    with caplog.at_level(logging.INFO):
        train(cfg, tmp_path / "first")
    assert "reusing cached tokenizer" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(cfg, tmp_path / "second")
    assert "reusing cached tokenizer" in caplog.text
    first = (tmp_path / "first" / "tokenizer" / "source.model").read_bytes()
    assert (tmp_path / "second" / "tokenizer" / "source.model").read_bytes() == first


def test_no_data_chosen_is_a_clear_error(compose_config: Compose, tmp_path: Path) -> None:
    cfg = compose_config(tiny=False)
    with pytest.raises(ValueError, match=r"set exactly one of data\.builtin .* and data\.path"):
        train(cfg, tmp_path / "run")


def test_early_stopping_stops_after_patience(compose_config: Compose, tmp_path: Path) -> None:
    # Validation loss rises once the learning rate is absurd: patience 1 stops at the
    # first validation that does not improve.
    cfg = compose_config(
        "experiment=toy_reverse",
        "trainer.max_steps=40",
        "trainer.eval_every=2",
        "trainer.monitor=loss",
        "trainer.patience=1",
        "optim.lr=5.0",
        "schedule=constant",
    )
    run = tmp_path / "run"
    train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "early_stopping"
    assert metrics["step"] < 40 and metrics["step"] == metrics["best"]["step"] + 2


def test_the_end_of_the_last_epoch_is_validated_once(
    compose_config: Compose, tmp_path: Path
) -> None:
    """trainer.max_epochs ends the run after a validation at its last step that is not
    the best (the absurd learning rate makes the loss rise): no second one follows."""
    cfg = compose_config(
        "experiment=toy_reverse",
        "trainer.max_steps=100000",
        "trainer.max_epochs=1",
        "trainer.eval_every=1",
        "trainer.monitor=loss",
        "optim.lr=5.0",
        "schedule=constant",
    )
    run = tmp_path / "run"
    train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "max_epochs"
    assert metrics["best"]["step"] < metrics["step"]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [event.step for event in events.Scalars("valid/loss")]
    assert steps == list(range(1, metrics["step"] + 1))


def test_bf16_autocast_trains_on_cpu(compose_config: Compose, tmp_path: Path) -> None:
    cfg = compose_config("experiment=toy_reverse", "attention=performer", "trainer.precision=bf16")
    run = tmp_path / "run"
    train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "max_steps" and metrics["skipped_steps"] == 0


def test_trainer_threads_sets_the_runs_threads_and_restores_the_callers(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`trainer.threads` is the run's intra-op pool; a library call gives the caller's back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with caplog.at_level(logging.INFO):
            train(compose_config("experiment=toy_reverse", "trainer.threads=1"), tmp_path / "run")
        assert "device cpu, 1 thread(s) (trainer.threads)" in caplog.text
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_max_time_stops_validates_and_tests_like_max_steps(
    compose_config: Compose, tmp_path: Path
) -> None:
    """A time budget (trainer.max_time, minutes) ends the run at the first step past it,
    with a validation, a checkpoint and the test figures, as the step budget does; a rerun
    with the same budget is finished, one with a larger budget trains on."""
    run = tmp_path / "run"
    budget = "trainer.max_time=0.00001"  # less than one step takes
    train(compose_config("experiment=toy_reverse", budget, "trainer.max_steps=50"), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_time", 1)
    assert metrics["best"]["step"] == 1 and "exact_match" in metrics["test"]
    assert (run / "checkpoints" / "step_00000001.pt").is_file()
    again = compose_config(
        "experiment=toy_reverse", budget, "trainer.max_steps=50", "trainer.resume=auto"
    )
    train(again, run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 1
    longer = compose_config(
        "experiment=toy_reverse",
        "trainer.max_time=0.00002",
        "trainer.max_steps=50",
        "trainer.resume=auto",
    )
    train(longer, run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
