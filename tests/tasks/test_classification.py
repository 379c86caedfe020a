"""The classification task: a whole run whose test figures seq2seq-generate and
seq2seq-evaluate reproduce, labels as strings or integers, sentence pairs, top-k labels
with probabilities, and one clear error for each kind of bad label data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.jobs.generate import generate_from_config
from seq2seq.jobs.train import train
from seq2seq.training.checkpoint import load_checkpoint

Compose = Callable[..., DictConfig]
BRACKETS = ("experiment=classify_brackets", "trainer.max_steps=6", "trainer.eval_every=3")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_run_writes_its_figures_and_generate_plus_evaluate_reproduce_them(
    compose_config: Compose,
    compose_generate: Compose,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    train(compose_config(*BRACKETS), run)
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"loss", "accuracy", "f1"} and metrics["monitor"] == "f1"
    per_class = metrics["test_details"]["per_class"]
    assert set(per_class) <= {"balanced", "unbalanced"}
    assert {"precision", "recall", "f1", "support"} <= set(next(iter(per_class.values())))
    counts = metrics["test_details"]["confusion"]["counts"]
    assert sum(map(sum, counts)) == metrics["data"]["test"]["kept"] == 16
    assert (run / "labels.txt").read_text().split() == ["balanced", "unbalanced"]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("valid/confusion")) == 2  # at each validation

    references = tmp_path / "gold.txt"
    labels = generate_from_config(
        compose_generate(
            f"checkpoint={run}", "split=test", "output=-", f"references_output={references}"
        ),
        command_line=[],
    )
    capsys.readouterr()
    assert labels == (run / "predictions.txt").read_text().split()
    hyp = tmp_path / "labels.txt"
    hyp.write_text("".join(f"{label}\n" for label in labels))
    assert (
        evaluate_main(
            ["--hyp", str(hyp), "--ref", str(references), "--metrics", "accuracy,f1", "--json"]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored == pytest.approx({key: test[key] for key in ("accuracy", "f1")})
    assert evaluate_main(["--checkpoint", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test)


def _jsonl(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _files(
    tmp_path: Path, train: list[dict[str, object]], valid: list[dict[str, object]]
) -> tuple[str, ...]:
    return (
        "task=classification",
        "tokenizer=char",
        "data.builtin=null",
        "data.path=json",
        f"data.data_files.train={_jsonl(tmp_path / 'train.jsonl', train)}",
        f"data.data_files.validation={_jsonl(tmp_path / 'valid.jsonl', valid)}",
        "trainer.max_steps=2",
        "trainer.eval_every=2",
    )


PAIRS = [
    {"premise": "a b c", "hypothesis": "a b", "label": 1},
    {"premise": "c c", "hypothesis": "d", "label": 0},
    {"premise": "d a", "hypothesis": "d a", "label": 1},
    {"premise": "b", "hypothesis": "c", "label": 2},
] * 8


def test_integer_labels_sentence_pairs_and_top_k_probabilities(
    compose_config: Compose, compose_generate: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    overrides = (
        *_files(tmp_path, PAIRS, PAIRS[:6]),
        "data.text=premise",
        "data.text_pair=hypothesis",
        "model.pooling=max",
    )
    train(compose_config(*overrides), run)
    checkpoint = load_checkpoint(run / "checkpoints" / "best.pt")
    assert checkpoint["labels"] == ["0", "1", "2"]  # numbers in numeric order, as text
    inputs = tmp_path / "pairs.txt"
    inputs.write_text("a b c\ta b\nb\tc\n")
    nbest = tmp_path / "nbest.tsv"
    labels = generate_from_config(
        compose_generate(
            f"checkpoint={run}",
            f"input={inputs}",
            f"output={tmp_path / 'out'}",
            f"nbest_output={nbest}",
            "top_k=2",
        ),
        command_line=[],
    )
    assert len(labels) == 2 and set(labels) <= {"0", "1", "2"}
    rows = [line.split("\t") for line in nbest.read_text().splitlines()]
    assert [(int(i), int(rank)) for i, rank, _, _ in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for index in (0, 1):
        probabilities = [float(p) for i, _, p, _ in rows if int(i) == index]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0
        assert [label for i, r, _, label in rows if int(i) == index and r == "0"] == [labels[index]]


@pytest.mark.parametrize(
    ("train_rows", "valid_rows", "message"),
    [
        (
            [{"text": "ab", "class": "x"}] * 4,
            [{"text": "ab", "class": "x"}],
            r"data\.label='label' is not a column of split 'train' \(train\); available columns: \['text', 'class'\]",
        ),
        (
            [
                {"text": "ab", "label": "x"},
                {"text": "cd", "label": ""},
                {"text": "c", "label": "y"},
            ],
            [{"text": "ab", "label": "x"}],
            r"example 2 of the train split \(data\.data_files\.train=.*\) has an empty label",
        ),
        (
            [{"text": "ab", "label": "x"}, {"text": "c", "label": "y"}],
            [{"text": "ab", "label": "x"}, {"text": "ab", "label": "z"}],
            r"label 'z' of the validation split \(data\.data_files\.validation=.*valid\.jsonl', example 2\) is not a label of the train split \['x', 'y'\]",
        ),
        (
            [{"text": "ab", "label": "x"}] * 3,
            [{"text": "ab", "label": "x"}],
            r"has 1 distinct label\(s\) in data\.label='label' \(\['x'\]\); a classifier needs at least two",
        ),
    ],
    ids=["missing-label-column", "empty-label", "unseen-label", "one-label"],
)
def test_bad_labels_are_one_clear_error(
    compose_config: Compose,
    tmp_path: Path,
    train_rows: list[dict[str, object]],
    valid_rows: list[dict[str, object]],
    message: str,
) -> None:
    cfg = compose_config(*_files(tmp_path, train_rows, valid_rows))
    with pytest.raises(ValueError, match=message):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_seq2seq_dataset_is_refused_naming_the_classification_ones(
    compose_config: Compose, tmp_path: Path
) -> None:
    cfg = compose_config("task=classification", "data=reverse")
    with pytest.raises(ValueError, match=r"choose one of \['brackets', 'listops', 'majority'\]"):
        train(cfg, tmp_path / "run")


def test_cls_pooling_reads_the_bos_token_the_task_puts_first(
    compose_config: Compose, tmp_path: Path
) -> None:
    from seq2seq.jobs.checks import check_config, checked_config
    from seq2seq.tasks import task_class

    cfg = checked_config(compose_config("experiment=classify_brackets"))
    check_config(cfg)
    task = task_class(cfg.task)(cfg)
    data = task.prepare()
    first = data.splits["train"][0]["input_ids"]
    assert first[0] == 2 and all(token != 2 for token in first[1:])  # bos, then the text
    assert torch.tensor(first).numel() <= cfg.model.max_len
