"""The `mqar` metric: the language model's teacher-forced argmax at MQAR's answers only,
against hand-counted values on a fake model whose predictions the test sets, the settings it
needs, and a run of the recipe checked against a plain forward pass of its best model."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.data.mqar import mqar_splits
from seq2seq.jobs.checks import checked_config
from seq2seq.jobs.train import run_training, train
from seq2seq.jobs.trained_run import checkpoint_file, load_run
from seq2seq.tasks.language_modeling import LanguageModelingTask
from seq2seq.tasks.language_modeling_evaluation import answer_predictions
from seq2seq.tokenizer import EOS_ID, PAD_ID, ByteTokenizer

Compose = Callable[..., DictConfig]
Rightness = Callable[[int, int], bool]
"""`right(document, position) -> whether the fake model predicts that token right`."""

pytestmark = pytest.mark.usefixtures("single_thread")

BYTES = ByteTokenizer()
DOCUMENTS = ["A!b)|b)A!", "x[|x[", "C$D%E&|E&C$D%"]
ANSWERS = [{6, 8}, {4}, {8, 10, 12}]
"""The characters after each queried key, counted by hand (6 answers of 30 predictions)."""
WRONG = BYTES.encode("`")[0]
"""A byte of neither alphabet: what the fake model predicts where it is wrong."""


class FakeLM(nn.Module):
    """Logits whose argmax is the next token of a document (its input row: eos, then its
    bytes) where `right` says so, and WRONG elsewhere; the rows may be padded."""

    def __init__(self, documents: Sequence[str], right: Rightness) -> None:
        super().__init__()
        self.table: dict[tuple[int, ...], list[int]] = {}
        for index, text in enumerate(documents):
            tokens = BYTES.encode(text)
            following = [*tokens, EOS_ID]
            predicted = [
                token if right(index, position) else WRONG
                for position, token in enumerate(following)
            ]
            self.table[(EOS_ID, *tokens)] = predicted

    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """tokens: `(B, L)` -> logits `(B, L, V)`."""
        logits = torch.zeros(*tokens.shape, BYTES.vocab_size)
        for row, ids in enumerate(tokens.tolist()):
            while ids and ids[-1] == PAD_ID:
                ids.pop()
            for position, token in enumerate(self.table[tuple(ids)]):
                logits[row, position, token] = 1.0
        return logits


def _write(path: Path, texts: Sequence[str]) -> str:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return str(path)


def _config(compose_config: Compose, tmp_path: Path, *overrides: str) -> DictConfig:
    texts = _write(tmp_path / "documents.jsonl", DOCUMENTS)
    return compose_config(
        "task=language_modeling",
        "tokenizer=byte",
        "data.path=json",
        f"data.data_files.train={texts}",
        f"data.data_files.validation={texts}",
        "data.block_size=16",
        "data.packing=document",
        "trainer.metrics=[mqar]",
        "trainer.monitor=mqar",
        *overrides,
    )


def _mqar(compose_config: Compose, tmp_path: Path, right: Rightness, max_tokens: int) -> float:
    cfg = _config(compose_config, tmp_path, f"data.max_tokens={max_tokens}")
    task = LanguageModelingTask(checked_config(cfg))
    task.prepare()
    evaluator = task.evaluator(
        "validation", FakeLM(DOCUMENTS, right), device=torch.device("cpu"), autocast_dtype=None
    )
    result = evaluator.evaluate(step=0)
    # Only a rule metric (`dyck`) samples documents; `mqar` reads the split, teacher forced.
    assert result.predictions == [] and "at_length_limit" not in result.figures
    return result.figures["mqar"]


def _answer(document: int, position: int) -> bool:
    return position in ANSWERS[document]


@pytest.mark.parametrize(
    ("right", "expected"),
    [
        pytest.param(lambda document, position: True, 100.0, id="all"),
        # Right at the answers and wrong at the other 24 predictions: counting every
        # position would give 6 of 30.
        pytest.param(_answer, 100.0, id="answers-only"),
        pytest.param(lambda d, p: not _answer(d, p), 0.0, id="all-but-answers"),
        # 3 of the 6 answers (the first document's first, the third's first two), and every
        # other position right: counting every position would give 27 of 30.
        pytest.param(
            lambda d, p: not _answer(d, p) or p in ({6}, set(), {8, 10})[d], 50.0, id="half"
        ),
        pytest.param(lambda d, p: d != 2 or not _answer(d, p), 50.0, id="all-but-the-third"),
        pytest.param(lambda d, p: d == 1, 100 / 6, id="the-second-only"),
    ],
)
@pytest.mark.parametrize("max_tokens", [16, 64])  # one block a chunk, or all in one
def test_mqar_counts_the_argmax_at_the_answers_only(
    compose_config: Compose,
    tmp_path: Path,
    right: Rightness,
    expected: float,
    max_tokens: int,
) -> None:
    assert _mqar(compose_config, tmp_path, right, max_tokens) == pytest.approx(expected)


def test_answer_predictions_take_the_argmax_row_by_row() -> None:
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 4] = logits[0, 2, 1] = logits[1, 1, 3] = 1.0
    targets = torch.tensor([[4, 9, 2], [8, 3, 7]])
    assert answer_predictions(logits, targets, [[0, 2], [1]]) == ([4, 1, 3], [4, 2, 3])


def test_mqar_is_a_figure_to_maximize(compose_config: Compose, tmp_path: Path) -> None:
    cfg = checked_config(_config(compose_config, tmp_path))
    assert LanguageModelingTask.figures(cfg) == {
        "loss": False,
        "ppl": False,
        "bpb": False,
        "mqar": True,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("tokenizer=unigram",),
            r"trainer\.metrics=\['mqar'\]: 'mqar' scores the prediction at each answer's byte, "
            r"one token per byte, which needs tokenizer\.model_type=byte; got "
            r"tokenizer\.model_type='unigram': set tokenizer=byte",
        ),
        (
            ("data.packing=packed",),
            r"'mqar' scores each document's answers in a context of that document alone, which "
            r"needs data\.packing=document \(one block per document\); got data\.packing='packed'",
        ),
    ],
)
def test_settings_mqar_cannot_read_fail_before_any_data_is_read(
    compose_config: Compose, tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    cfg = _config(compose_config, tmp_path, *overrides)
    with pytest.raises(ValueError, match=message):
        run_training(cfg, tmp_path / "run", command_line=overrides)
    assert not (tmp_path / "run").exists()


def test_a_document_that_is_not_mqar_is_named(compose_config: Compose, tmp_path: Path) -> None:
    other = _write(tmp_path / "other.jsonl", [DOCUMENTS[0], "([])"])
    cfg = _config(compose_config, tmp_path, f"data.data_files.validation={other}")
    with pytest.raises(
        ValueError,
        match=r"'mqar' finds no answers in document 1 of the validation split "
        r"\(data\.data_files\.validation='.*other\.jsonl'\): '\(\[\]\)' is not an MQAR example",
    ):
        LanguageModelingTask(checked_config(cfg)).prepare()


def test_a_block_that_cuts_an_answer_off_is_an_error(
    compose_config: Compose, tmp_path: Path
) -> None:
    cfg = _config(compose_config, tmp_path, "data.block_size=12")
    with pytest.raises(
        ValueError,
        match=r"document 2 of the validation split is cut before its last answer \(byte 12\) "
        r"by data\.block_size=12; raise data\.block_size to at least 13",
    ):
        LanguageModelingTask(checked_config(cfg)).prepare()


def test_a_run_of_the_recipe_writes_mqar_as_a_plain_forward_pass_counts_it(
    compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    sizes = ("data.train_size=200", "data.validation_size=8", "data.test_size=32")
    # Enough steps that the model predicts some bytes right (the commonest, `|`, at first):
    # counting the positions other than the answers would then show.
    steps = ("trainer.max_steps=30", "trainer.eval_every=30", "optim.lr=3e-3")
    train(compose_config("experiment=mqar", *steps, *sizes), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "ppl", "bpb", "mqar"}
    assert "mqar" in metrics["best"]

    # The test split again (the recipe's seed, the TINY preset's 3 to 8 pairs), each
    # document run whole through the best model: the argmax after each queried key.
    trained = load_run(checkpoint_file(str(run)), torch.device("cpu"))
    test = mqar_splits(
        train_size=200, validation_size=8, test_size=32, min_pairs=3, max_pairs=8, seed=1234
    )["test"]["text"]
    right = total = anywhere = everywhere = 0
    with torch.no_grad():
        for text in test:
            tokens = BYTES.encode(text)
            predicted = trained.model(torch.tensor([[EOS_ID, *tokens]]), None)[0].argmax(-1)
            hits = (predicted == torch.tensor([*tokens, EOS_ID])).tolist()
            start = text.index("|") + 1
            answers = range(start + 1, len(text), 2)  # each query's value
            right += sum(hits[offset] for offset in answers)
            total += len(answers)
            anywhere += sum(hits)
            everywhere += len(hits)
    assert metrics["test"]["mqar"] == pytest.approx(100 * right / total)
    assert metrics["test"]["mqar"] != pytest.approx(100 * anywhere / everywhere)


@pytest.mark.parametrize("recipe", ["toy_reverse", "classify_brackets"])
def test_other_tasks_refuse_the_answer_metric(compose_config: Compose, recipe: str) -> None:
    """seq2seq and classification make no answer positions: `mqar` there would be plain
    accuracy under its name."""
    cfg = compose_config(f"experiment={recipe}", "trainer.metrics=[mqar]")
    with pytest.raises(ValueError, match=r"'mqar' scores a language model's predictions"):
        checked_config(cfg)
