"""`data.streaming=true`: a streamed train split trains, counts what it drops, and resumes
mid-epoch (mid-window) with the same losses as an unbroken run; at two ranks too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from seq2seq.config.schema import TrainConfig
from seq2seq.data.cleaning import CleanReport
from seq2seq.data.prepare import open_train_stream
from seq2seq.data.streaming import StreamedBatches, Window
from seq2seq.jobs.checks import checked_config
from seq2seq.jobs.train import train
from seq2seq.training.checkpoint import load_checkpoint
from support.distributed_runs import train_processes, train_scalars
from support.recorded_losses import record_losses

Compose = Callable[..., DictConfig]
SIGNAL_AFTER_STEP = Path(__file__).parents[1] / "support" / "signal_after_step.py"

# Windows of 30 examples hold a few batches each, so a stop after step 5 falls inside a
# window, and 8 steps cross windows.
STREAMED_PAIRS = (
    "experiment=toy_reverse",
    "data.streaming=true",
    "data.buffer_size=30",
    "data.max_tokens=64",
    "data.train_size=400",
    "trainer.max_steps=8",
    "trainer.eval_every=4",
    "model.dropout=0.1",
)


def _write_documents(path: Path, count: int) -> Path:
    """A text file of `count` lines (documents) of varied length, one empty in 25."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines = [
        "" if i % 25 == 7 else " ".join(words[(i + k) % 8] for k in range(1 + i % 11))
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _streamed_text(tmp_path: Path) -> tuple[str, ...]:
    train = _write_documents(tmp_path / "train.txt", 600)
    held_out = _write_documents(tmp_path / "valid.txt", 20)
    return (
        "task=language_modeling",
        "tokenizer=char",
        "data.path=text",
        f"data.data_files.train={train}",
        f"data.data_files.validation={held_out}",
        "data.splits.test=null",
        "data.streaming=true",
        "data.buffer_size=50",
        "data.block_size=16",
        "data.max_tokens=64",
        "model.max_len=32",
        "trainer.metrics=[]",
        "trainer.monitor=loss",
        "trainer.max_steps=8",
        "trainer.eval_every=4",
        "model.dropout=0.1",
    )


def _interrupted_and_resumed(
    compose_config: Compose,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    overrides: tuple[str, ...],
    *,
    stop_after: int,
) -> tuple[list[float], list[float], Path]:
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides), tmp_path / "unbroken")
    first = record_losses(monkeypatch, stop_after=stop_after)
    run = tmp_path / "interrupted"
    train(compose_config(*overrides), run)
    assert len(first) == stop_after
    second = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides, "trainer.resume=auto"), run)
    return unbroken, first + second, run


def test_streamed_pairs_resume_mid_window_like_an_unbroken_run(
    compose_config: Compose,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unbroken, resumed, run = _interrupted_and_resumed(
        compose_config, monkeypatch, tmp_path, STREAMED_PAIRS, stop_after=5
    )
    # Sought from the saved position: the epoch's stream was not read again.
    assert "read again from its start" not in caplog.text
    assert len(unbroken) == 8
    assert resumed == unbroken  # bit for bit
    checkpoint = load_checkpoint(run / "checkpoints" / "step_00000005.pt")
    (position,) = checkpoint["data_position"]
    # Stopped inside a window, past its first batch: the resume re-read that window alone.
    assert position["window"] >= 1 and position["in_window"] >= 1
    assert position["epoch"] == 0 and position["epoch_batches"] == 5
    metrics = json.loads((run / "metrics.json").read_text())
    # Every example read so far, counted once although its window was read twice.
    unbroken_metrics = json.loads((tmp_path / "unbroken" / "metrics.json").read_text())
    assert metrics["data"]["train"] == unbroken_metrics["data"]["train"]
    assert 0 < metrics["data"]["train"]["total"] <= 400


def test_streamed_text_file_resumes_and_counts_what_it_drops(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = _streamed_text(tmp_path)
    unbroken, resumed, run = _interrupted_and_resumed(
        compose_config, monkeypatch, tmp_path, overrides, stop_after=3
    )
    assert resumed == unbroken
    train_report = json.loads((run / "metrics.json").read_text())["data"]["train"]
    # Empty lines are dropped and counted; each window's incomplete last block too.
    assert train_report["dropped_empty"] > 0
    assert train_report["dropped_tokens"] > 0
    assert train_report["documents"] % 50 == 0  # whole windows


def test_an_epoch_of_a_stream_ends_and_the_next_reads_it_again(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 examples in windows of 50: two epochs of a short stream, the second shuffled
    otherwise, and max_epochs ends the run."""
    losses = record_losses(monkeypatch, stop_after=None)
    cfg = compose_config(
        *STREAMED_PAIRS,
        "data.train_size=120",
        "data.buffer_size=50",
        "trainer.max_epochs=2",
        "trainer.max_steps=1000",
    )
    train(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped"] == "max_epochs"
    assert metrics["data"]["train"]["total"] == 240  # each example once an epoch
    assert len(losses) == metrics["step"] > 2


def test_the_tokenizer_learns_from_the_first_examples_of_the_stream(
    compose_config: Compose,
) -> None:
    cfg = checked_config(compose_config(*STREAMED_PAIRS, "tokenizer.train_examples=7"))
    assert isinstance(cfg, TrainConfig)
    stream = open_train_stream(cfg.data, seed=cfg.seed)
    sample = stream.sample(cfg.tokenizer)
    assert len(sample) == 7 and sample.column_names == ["source", "target"]
    assert sample[0] == next(iter(stream.rows))


def test_classification_refuses_streaming(compose_config: Compose) -> None:
    with pytest.raises(ValueError, match=r"data.streaming=true: a classification run"):
        checked_config(compose_config("experiment=classify_brackets", "data.streaming=true"))


@pytest.mark.slow
def test_two_ranks_resume_a_stream_like_an_unbroken_run(tmp_path: Path) -> None:
    """Two processes, each reading its part of the stream, stopped by SIGTERM after step 5
    (as torchrun forwards a scheduler's) and resumed, log the losses of an unbroken run,
    step for step, to the bit. The parts hold unequal batch counts, so each epoch ends
    where the first rank runs out; 12 steps cross an epoch end."""
    overrides = (
        "experiment=toy_reverse",
        "model=tiny",
        "data.streaming=true",
        "data.buffer_size=40",
        "data.max_tokens=96",
        "data.train_size=90",
        "data.validation_size=8",
        "data.test_size=8",
        "trainer.max_steps=12",
        "trainer.log_every=1",
        "trainer.eval_every=4",
        "trainer.progress=log",
        "model.dropout=0.1",
    )
    unbroken = train_processes(tmp_path / "unbroken", *overrides, cwd=tmp_path)
    resumed = train_processes(
        tmp_path / "resumed",
        *overrides,
        cwd=tmp_path,
        entry=[str(SIGNAL_AFTER_STEP)],
        env={"SIGNAL_AFTER_STEP": "5"},
        status=1,  # torchrun's status when a worker (rank 0: 143, SIGTERM) did not finish
    )
    saved = load_checkpoint(resumed / "checkpoints" / "step_00000005.pt")["data_position"]
    assert [state["epoch_batches"] for state in saved] == [5, 5]
    assert json.loads((resumed / "metrics.json").read_text())["stopped"] == "SIGTERM"
    train_processes(resumed, *overrides, "trainer.resume=auto", cwd=tmp_path)
    whole, parts = train_scalars(unbroken, "train/loss"), train_scalars(resumed, "train/loss")
    assert [step for step, _ in whole] == list(range(1, 13))
    assert parts == whole
    final = load_checkpoint(resumed / "checkpoints" / "step_00000012.pt")
    assert final["data_position"][0]["epoch"] == final["data_position"][1]["epoch"] >= 1
    for name, tensor in load_checkpoint(unbroken / "checkpoints" / "step_00000012.pt")[
        "model"
    ].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=0, atol=0)


class _OneRank:
    rank, world_size, is_main = 0, 1, True

    def any(self, flag: bool) -> bool:
        return flag

    def gather(self, obj: object) -> list[object]:
        return [obj]


def _numbers_stream(count: int, buffer_size: int) -> StreamedBatches:
    """A stream of `count` examples `{"n": i}` costing 1 + i % 5 positions each."""
    rows = datasets.Dataset.from_dict({"n": list(range(count))}).to_iterable_dataset()

    def prepare(window: list[dict[str, Any]]) -> Window:
        examples = datasets.Dataset.from_list(window)
        costs = np.array([1 + row["n"] % 5 for row in window], dtype=np.int64)
        return Window(examples, costs, CleanReport("drop", len(window), 0, 0, 0, 8, 8))

    return StreamedBatches(
        rows,
        prepare=prepare,
        columns=["n"],
        collate_fn=lambda examples: [example["n"] for example in examples],
        max_tokens=12,
        buffer_size=buffer_size,
        seed=3,
        distributed=_OneRank(),
        reports={},
        identity={},
    )


def test_each_epoch_reads_every_example_once_in_a_new_order_within_windows() -> None:
    stream = _numbers_stream(100, buffer_size=20)
    epochs = [list(stream.epoch(epoch, 0)) for epoch in (0, 1)]
    for batches in epochs:
        seen = [n for batch in batches for n in batch]
        assert sorted(seen) == list(range(100))
        assert all(sum(1 + n % 5 for n in batch) <= 12 for batch in batches)
        # A batch never mixes windows: the buffer bounds what is shuffled together.
        assert all(len({n // 20 for n in batch}) == 1 for batch in batches)
    assert epochs[0] != epochs[1]
    assert stream.reports["train"].total == 200


def test_a_restored_position_continues_with_the_next_batch() -> None:
    stream = _numbers_stream(100, buffer_size=20)
    whole = list(stream.epoch(0, 0))
    partial = stream.epoch(0, 0)
    taken = [next(partial) for _ in range(7)]
    state = stream.state_dict()
    fresh = _numbers_stream(100, buffer_size=20)
    fresh.load_state_dict(state)
    assert taken + list(fresh.epoch(0, 7)) == whole
    # Without the saved position the epoch is read again from its start to the batch.
    assert list(_numbers_stream(100, buffer_size=20).epoch(0, 7)) == whole[7:]


def test_a_broken_line_deep_in_the_stream_is_one_error_naming_the_file_and_window(
    compose_config: Compose, tmp_path: Path
) -> None:
    good = [json.dumps({"source": "a b c", "target": "c b a"}) for _ in range(80)]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("\n".join([*good, '{"source": broken', *good]) + "\n")
    held_out = tmp_path / "valid.jsonl"
    held_out.write_text("\n".join(good[:4]) + "\n")
    cfg = compose_config(
        "data.builtin=null",
        "data.path=json",
        f"data.data_files.train={train_file}",
        f"data.data_files.validation={held_out}",
        "data.streaming=true",
        "data.buffer_size=30",
        "tokenizer=char",
        "tokenizer.train_examples=10",
        "trainer.max_steps=50",
    )
    with pytest.raises(ValueError, match=r"streamed train split \(data.path='json', data."):
        train(cfg, tmp_path / "run")
