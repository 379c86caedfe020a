"""The language-modeling task: blocks against a hand-built stream, bits per byte against
the loss, prompt continuation against the full forward pass, bad input, and a whole run
whose figures seq2seq-generate and seq2seq-evaluate reproduce."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.model import DecoderConfig, ModelConfig
from seq2seq.jobs.checks import checked_config
from seq2seq.jobs.generate import generate_from_config
from seq2seq.jobs.train import run_training, train
from seq2seq.model import build_model
from seq2seq.tasks.language_modeling import LanguageModelingTask
from seq2seq.tasks.language_modeling_batches import collate_blocks
from seq2seq.tasks.language_modeling_data import BLOCK, make_blocks
from support.tiny_models import continue_on_cpu

Compose = Callable[..., DictConfig]
EOS = 3
LM = ("experiment=lm_dyck", "trainer.sampled_documents=20", "data.block_size=16")

pytestmark = pytest.mark.usefixtures("single_thread")


def test_packed_blocks_cut_the_stream_with_one_token_of_overlap() -> None:
    documents = [[10, 11], [12], [13, 14, 15]]
    texts = ["ab", "c", "def"]
    stream = [EOS, 10, 11, EOS, 12, EOS, 13, 14, 15, EOS]  # eos before each, one at the end
    blocks, shares, report = make_blocks(
        documents, texts, block_size=4, eos_id=EOS, packed=True, complete_only=False
    )
    assert blocks == [stream[0:5], stream[4:9], stream[8:10]]
    # Every predicted token is scored once: the inputs and targets of consecutive blocks
    # overlap by one token, and the held-out tail is kept.
    assert sum(len(block) - 1 for block in blocks) == len(stream) - 1 == report.tokens
    # The byte shares add up to the text's bytes plus one per document end.
    assert sum(shares) == pytest.approx(2 + 1 + 3 + 3)
    train, _, train_report = make_blocks(
        documents, texts, block_size=4, eos_id=EOS, packed=True, complete_only=True
    )
    assert train == blocks[:2] and train_report.dropped_tokens == 1


def test_document_blocks_cut_long_documents_and_count_them() -> None:
    blocks, shares, report = make_blocks(
        [[10, 11, 12, 13], [], [14]],
        ["abcd", "", "e"],
        block_size=3,
        eos_id=EOS,
        packed=False,
        complete_only=True,
    )
    assert blocks == [[EOS, 10, 11, 12], [EOS, 14, EOS]]
    assert (report.documents, report.dropped_empty, report.truncated) == (3, 1, 1)
    # The cut document is scored for 3 of its 5 predicted tokens: 3/5 of its 5 bytes.
    assert shares == pytest.approx([5 * 3 / 5, 2.0])


def _lm(decoder: str) -> torch.nn.Module:
    cfg = ModelConfig(
        d_model=32,
        heads=4,
        d_ff=64,
        dropout=0.0,
        max_len=64,
        decoder=DecoderConfig(layers=2, self_attention=decoder),
    )
    torch.manual_seed(0)
    return build_model(
        cfg, kind="decoder_lm", src_vocab_size=12, tgt_vocab_size=12, pad_id=0
    ).eval()


@pytest.mark.parametrize("decoder", ["softmax", "causal_linear"])
def test_greedy_continuation_is_the_argmax_of_the_full_forward_pass(decoder: str) -> None:
    """Prompts of several lengths, batched by length through the incremental state, give
    what re-running the whole sequence and taking the argmax gives, token after token."""
    model = _lm(decoder)
    prompts = [[EOS, 5, 6, 7], [EOS], [EOS, 9], [EOS, 4, 4, 8]]
    settings = GenerationConfig(max_new_tokens=6, min_len=6)
    results = continue_on_cpu(model, prompts, settings, max_tokens=64)
    for prompt, nbest in zip(prompts, results, strict=True):
        sequence = list(prompt)
        with torch.no_grad():
            for _ in range(6):
                logits = model(torch.tensor([sequence]), None)[0, -1]
                logits[[0, 2, EOS]] = -math.inf  # pad, bos; eos forbidden before min_len
                sequence.append(int(logits.argmax()))
        assert nbest[0].tokens == sequence[len(prompt) :]


@pytest.mark.parametrize("decoder", ["softmax", "causal_linear"])
def test_a_blocks_loss_is_the_same_beside_longer_blocks(
    decoder: str, compose_config: Compose
) -> None:
    """Blocks batched with longer ones are padded on the right and given to the model with
    no padding mask: their loss and gradients are those they have alone."""
    task = LanguageModelingTask(checked_config(compose_config("experiment=lm_dyck")))
    model = _lm(decoder)
    blocks = [[EOS, 5, 6, 7, 8, 9, 4, 5, 6], [EOS, 9, 4], [EOS, 4, 4, 8, 5]]

    def loss_and_gradients(chosen: list[list[int]]) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        sums = task.loss(model, collate_blocks([{BLOCK: block} for block in chosen]))
        sums.loss.backward()
        return float(sums.loss.detach()), [p.grad.clone() for p in model.parameters()]

    together, together_grads = loss_and_gradients(blocks)
    alone = [loss_and_gradients([block]) for block in blocks]
    assert together == pytest.approx(sum(loss for loss, _ in alone), rel=1e-5)
    for i, grad in enumerate(together_grads):
        torch.testing.assert_close(grad, sum(grads[i] for _, grads in alone), atol=1e-5, rtol=1e-4)


def test_a_continuation_stops_at_the_positions_left(compose_config: Compose) -> None:
    model = _lm("softmax")
    long_prompt = [EOS, *([5] * 60)]
    (nbest,) = continue_on_cpu(
        model, [long_prompt], GenerationConfig(max_new_tokens=50, min_len=50)
    )
    # The prompt takes 61 of the 64 positions; each output token is fed back in turn.
    assert len(nbest[0].tokens) == 64 - len(long_prompt)
    assert nbest[0].at_limit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("data.block_size=200",),
            r"data\.block_size=200 is longer than the positions cover \(model\.max_len=128\)",
        ),
        (("trainer.metrics=[bleu]",), r"'bleu' compares outputs with references"),
        (
            ("data.max_source_len=5",),
            r"data\.max_source_len=5 is not read by task=language_modeling",
        ),
        (
            ("task=language_modeling", "data=reverse"),
            r"data\.builtin='reverse' makes \['source', 'target'\] columns, for another task than task=language_modeling; choose one of \['dyck', 'mqar', 'python_stdlib'\]",
        ),
    ],
)
def test_bad_settings_fail_before_any_data_is_read(
    compose_config: Compose, tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:

    cfg = compose_config(*LM, *overrides)
    with pytest.raises(ValueError, match=message):
        run_training(cfg, tmp_path / "run", command_line=overrides)
    assert not (tmp_path / "run").exists()


def _write(path: Path, rows: list[dict[str, str]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_missing_text_column_names_it(compose_config: Compose, tmp_path: Path) -> None:
    train_file = _write(tmp_path / "train.jsonl", [{"body": "()"}] * 4)
    cfg = compose_config(
        "task=language_modeling",
        "tokenizer=byte",
        "data.path=json",
        f"data.data_files.train={train_file}",
        f"data.data_files.validation={train_file}",
        "data.block_size=8",
    )
    with pytest.raises(
        ValueError, match=r"data\.text='text' is not a column of split 'train'.*\['body'\]"
    ):
        train(cfg, tmp_path / "run")


def test_a_split_with_no_complete_block_is_an_error(
    compose_config: Compose, tmp_path: Path
) -> None:
    train_file = _write(tmp_path / "train.jsonl", [{"text": "()"}] * 2)
    cfg = compose_config(
        "task=language_modeling",
        "tokenizer=byte",
        "data.path=json",
        f"data.data_files.train={train_file}",
        f"data.data_files.validation={train_file}",
        "data.block_size=64",
    )
    with pytest.raises(
        ValueError,
        match=r"the train split \(data\.data_files\.train=.*\) has no complete block: 2 non-empty documents, 6 tokens, data\.block_size=64",
    ):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_trains_and_generate_plus_evaluate_reproduce_its_test_figures(
    compose_config: Compose,
    compose_generate: Compose,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = tmp_path / "run"
    limit = "generation.max_new_tokens=12"
    with caplog.at_level(logging.WARNING):
        train(compose_config(*LM, "trainer.max_steps=6", "trainer.eval_every=3", limit), run)
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) == {"loss", "ppl", "bpb", "dyck", "at_length_limit"}
    # A byte tokenizer's tokens are the bytes (and one end per document), so without label
    # smoothing bits per byte is the loss in bits.
    assert test["bpb"] == pytest.approx(test["loss"] / math.log(2), rel=1e-4)
    assert test["ppl"] == pytest.approx(math.exp(test["loss"]), rel=1e-4)
    samples = (run / "predictions.txt").read_text().removesuffix("\n").split("\n")
    assert len(samples) == 20
    # Six steps in, most samples run on to the 12-token limit; each is counted.
    at_limit = int(test["at_length_limit"])
    assert at_limit > 0
    assert f"{at_limit} of 20 sampled documents stopped at the length limit" in caplog.text

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n" * 20)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        generated = generate_from_config(
            compose_generate(f"checkpoint={run}", f"input={prompts}", "output=-"), command_line=[]
        )
    assert generated == samples
    assert f"{at_limit} of 20 continuations stopped at the length limit" in caplog.text
    assert "raise generation.max_new_tokens=12" in caplog.text
    capsys.readouterr()  # the samples generate wrote to stdout
    out = tmp_path / "samples.txt"
    out.write_text("".join(f"{line}\n" for line in generated))
    assert evaluate_main(["--hyp", str(out), "--metrics", "dyck", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dyck"] == pytest.approx(test["dyck"])
    assert evaluate_main(["--checkpoint", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test)
