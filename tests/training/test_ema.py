"""EMA weights (`trainer.ema_decay`): the average against a plain reference computed here,
validation and the test figures on the EMA weights, the `ema` entry of every checkpoint, the
weights generation and averaging take, and a resume that equals an unbroken run, EMA
included."""

from __future__ import annotations

import json
import shutil
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from omegaconf import DictConfig
from torch import Tensor, nn

from seq2seq.config.training import OptimConfig, ScheduleConfig, TrainerConfig
from seq2seq.data.batching import PairBatch
from seq2seq.jobs.average import average_checkpoint_files, parameter_names
from seq2seq.jobs.train import train
from seq2seq.jobs.trained_run import inference_weights, rebuild_run
from seq2seq.model.attention.feature_maps import favor_maps
from seq2seq.training.checkpoint import (
    EMA_KEY,
    CheckpointManager,
    checkpoint_paths,
    load_checkpoint,
    strip_prefixes,
    weights_for_inference,
)
from seq2seq.training.distributed import Distributed
from seq2seq.training.evaluator import EvaluationResult
from seq2seq.training.loss import LossSums, label_smoothed_cross_entropy
from seq2seq.training.optim import build_optimizer
from seq2seq.training.precision import PRECISIONS
from seq2seq.training.schedule import build_scheduler
from seq2seq.training.state import Monitor
from seq2seq.training.trainer import Trainer
from support.recorded_losses import record_losses
from support.tiny_models import (
    PAD,
    linear_settings,
    reversal_batches,
    tiny_config,
    tiny_model,
)

pytestmark = pytest.mark.usefixtures("single_thread")

Compose = Callable[..., DictConfig]
TrainRun = Callable[..., Path]
BOS, EOS = 1, 2
DECAY = 0.75  # not 0.5: a decay applied the wrong way round gives another average


# --- the loop, driven step by step on a tiny model ---------------------------------------


def _model() -> nn.Module:
    """A tiny encoder-decoder with a FAVOR+ decoder redrawn every step: buffers that move."""
    linear = linear_settings("causal_linear", nb_features=8, redraw_interval=1)
    torch.manual_seed(0)
    return tiny_model(tiny_config(decoder="causal_linear", linear=linear, layers=1))


def _batches(sizes: list[int]) -> list[PairBatch]:
    return reversal_batches(sizes)


def _trainer(
    model: nn.Module, batches: list[PairBatch], *, evaluate: Any = None, **trainer: Any
) -> Trainer:
    cfg = TrainerConfig(max_steps=100, max_epochs=1, progress="off", **trainer)
    optimizer = build_optimizer(model, OptimConfig(name="sgd", lr=0.5, weight_decay=0.0))
    scheduler = build_scheduler(
        optimizer, ScheduleConfig(name="constant", warmup_steps=0), max_steps=100
    )

    def epoch(_: int, start: int) -> Iterator[PairBatch]:
        yield from batches[start:]

    def loss(model: nn.Module, batch: PairBatch) -> LossSums:
        logits = model(batch.src_tokens, batch.src_mask, batch.tgt_input, batch.tgt_mask)
        return label_smoothed_cross_entropy(logits, batch.tgt_output, pad_id=PAD, smoothing=0.0)

    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=types.SimpleNamespace(
            epoch=epoch, layout=dict, state_dict=lambda: None, load_state_dict=print
        ),  # type: ignore[arg-type]
        loss=loss,
        evaluator=types.SimpleNamespace(evaluate=evaluate),  # type: ignore[arg-type]
        monitor=Monitor("loss", higher_is_better=False),
        checkpoints=CheckpointManager(Path(tempfile.mkdtemp()), keep_last=1),
        logger=None,
        cfg=cfg,
        device=torch.device("cpu"),
        checkpoint_extras={},
        distributed=Distributed(),
    )


def _parameters(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _poison_rows(module: nn.Module, rows: int) -> None:
    """`module` outputs NaN for batches of `rows` examples: their step is skipped."""

    def hook(_: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
        return output + float("nan") if output.shape[0] == rows else None

    module.register_forward_hook(hook)


def test_the_ema_follows_a_plain_reference_from_ema_start() -> None:
    """Steps 1-2 copy the weights (ema_start=2), then `ema = d * ema + (1 - d) * w` with the
    weights after each step taken; a skipped step (the batch of 3) leaves it alone."""
    model = _model()
    trainer = _trainer(model, _batches([2, 2, 2, 3, 2, 2]), ema_decay=DECAY, ema_start=2)
    _poison_rows(model.decoder.layers[0].feedforward, rows=3)
    reference = {name: weight.float() for name, weight in _parameters(model).items()}
    skipped = 0
    for group in trainer._micro_batches():
        if trainer.train_step(group) is None:
            skipped += 1
        else:
            weights = _parameters(model)
            for name, weight in weights.items():
                if trainer.state.step <= 2:
                    reference[name] = weight.clone()
                else:
                    reference[name] = DECAY * reference[name] + (1 - DECAY) * weight
        assert trainer.ema is not None
        for name, expected in reference.items():
            torch.testing.assert_close(trainer.ema.weights[name], expected, rtol=1e-6, atol=1e-7)
    assert skipped == 1 and trainer.state.step == 5
    moved = [name for name, weight in weights.items() if not torch.equal(weight, reference[name])]
    assert moved, "after step 2 the EMA should lag behind the weights"


@pytest.mark.parametrize("ema_eval", [True, False])
def test_validation_sees_the_ema_weights_and_training_goes_on_from_its_own(
    ema_eval: bool,
) -> None:
    model = _model()
    seen: list[dict[str, Tensor]] = []

    def evaluate(step: int) -> EvaluationResult:
        seen.append(_parameters(model))
        return EvaluationResult(figures={"loss": 1.0}, predictions=[])

    trainer = _trainer(
        model, _batches([2, 2, 2]), evaluate=evaluate, ema_decay=DECAY, ema_eval=ema_eval
    )
    for group in trainer._micro_batches():
        trainer.train_step(group)
    own = _parameters(model)
    trainer.evaluate()
    assert trainer.ema is not None
    expected = trainer.ema.weights if ema_eval else own
    for name, weight in seen[0].items():
        assert torch.equal(weight, expected[name]), name
    assert any(not torch.equal(own[name], trainer.ema.weights[name]) for name in own)
    after = _parameters(model)
    assert all(torch.equal(after[name], own[name]) for name in own), "weights not restored"


def test_validation_sees_the_projections_its_step_trained_with() -> None:
    """FAVOR+ redraws happen as the next step begins: step N's validation sees the
    projections step N's forward pass used, not a fresh draw the weights never met."""
    model = _model()  # redrawn every step
    (first, *_) = favor_maps(model)
    trained: list[Tensor] = []
    validated: list[Tensor] = []

    def record(module: nn.Module, args: Any) -> None:
        if module.training:
            trained.append(first.projection.clone())

    def evaluate(step: int) -> EvaluationResult:
        validated.append(first.projection.clone())
        return EvaluationResult(figures={"loss": 1.0}, predictions=[])

    model.register_forward_pre_hook(record)
    trainer = _trainer(model, _batches([2, 2, 2]), evaluate=evaluate)
    for group in trainer._micro_batches():
        trainer.train_step(group)
        trainer.evaluate()
    assert len(trained) == len(validated) == 3
    for step, (used, seen) in enumerate(zip(trained, validated, strict=True)):
        assert torch.equal(used, seen), f"step {step + 1} validated a projection it never used"
    assert not torch.equal(trained[0], trained[1]) and not torch.equal(trained[1], trained[2])


def test_the_checkpoint_holds_the_ema_with_the_models_buffers_and_restores_it() -> None:
    model = _model()
    trainer = _trainer(model, _batches([2, 2, 2]), ema_decay=DECAY, ema_start=1)
    persistent = model.state_dict().keys()
    initial = {name: b.clone() for name, b in model.named_buffers() if name in persistent}
    for group in trainer._micro_batches():
        trainer.train_step(group)
    state = trainer.state_dict()
    ema, raw = state[EMA_KEY], state["model"]
    assert ema.keys() == raw.keys()
    assert trainer.ema is not None
    for name, weight in trainer.ema.weights.items():
        assert torch.equal(ema[name], weight)
        assert ema[name].dtype == torch.float32
    projections = [name for name in initial if name.endswith("projection")]
    assert projections
    for name in initial:  # buffers are the model's, redrawn since, not averaged
        assert torch.equal(ema[name], raw[name])
    assert any(not torch.equal(initial[name], raw[name]) for name in projections)

    saved = tempfile.mkdtemp() + "/state.pt"
    torch.save(state, saved)
    fresh = _trainer(_model(), _batches([2]), ema_decay=0.5)
    fresh.load_state_dict(torch.load(saved, weights_only=True))
    assert fresh.ema is not None
    for name, weight in trainer.ema.weights.items():
        assert torch.equal(fresh.ema.weights[name], weight)

    assert EMA_KEY not in _trainer(_model(), _batches([2])).state_dict()


def _config(**trainer: Any) -> str:
    return yaml.safe_dump({"trainer": trainer})


def test_the_weights_for_inference_are_the_ema_where_the_run_evaluated_with_it() -> None:
    raw, ema = {"module.w": torch.zeros(2)}, {"_orig_mod.w": torch.ones(2)}
    cases = [
        ({"model": raw, EMA_KEY: ema, "config": _config(ema_decay=0.9, ema_eval=True)}, 1.0),
        ({"model": raw, EMA_KEY: ema, "config": _config(ema_decay=0.9)}, 1.0),
        ({"model": raw, EMA_KEY: ema, "config": _config(ema_decay=0.9, ema_eval=False)}, 0.0),
        ({"model": raw, "config": _config(ema_decay=None)}, 0.0),
        ({"model": raw, "config": ""}, 0.0),
    ]
    for checkpoint, value in cases:
        assert weights_for_inference(checkpoint).keys() == {"w"}
        assert torch.equal(weights_for_inference(checkpoint)["w"], torch.full((2,), value))


# --- whole runs ----------------------------------------------------------------------------

RUN = ("experiment=toy_reverse", "trainer.max_steps=4", "trainer.eval_every=2")
EMA = ("trainer.ema_decay=0.8", "trainer.ema_start=1")


@pytest.fixture(scope="module")
def ema_run(train_run: TrainRun) -> Path:
    return train_run("ema", *RUN, *EMA)


def _figures(path: Path, split: str, weights: str) -> dict[str, float]:
    """`split`'s figures for the checkpoint `path` with its `weights` entry loaded."""
    checkpoint = load_checkpoint(path)
    run = rebuild_run(checkpoint, path)
    run.model.load_state_dict(strip_prefixes(checkpoint[weights]))
    run.task.prepare()
    evaluator = run.task.evaluator(
        split,
        run.model,
        device=torch.device("cpu"),
        autocast_dtype=PRECISIONS[run.config.trainer.precision],
    )
    return evaluator.evaluate(step=0).figures


def test_validation_best_pt_and_the_test_figures_are_the_ema_weights(
    ema_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ema_run.parent)
    checkpoints = ema_run / "checkpoints"
    best, last = checkpoints / "best.pt", checkpoints / "step_00000004.pt"
    for path in [*checkpoint_paths(checkpoints), best]:
        checkpoint = load_checkpoint(path)
        assert checkpoint[EMA_KEY].keys() == checkpoint["model"].keys(), path
        # What seq2seq-generate and seq2seq-evaluate --checkpoint decode with.
        for name, weight in weights_for_inference(checkpoint).items():
            assert torch.equal(weight, checkpoint[EMA_KEY][name])
    metrics = json.loads((ema_run / "metrics.json").read_text())
    final = _figures(last, "validation", EMA_KEY)
    assert metrics["final_validation"] == pytest.approx(final, rel=1e-6)
    assert final["loss"] != pytest.approx(_figures(last, "validation", "model")["loss"])
    test = _figures(best, "test", EMA_KEY)
    assert metrics["test"] == pytest.approx(test, rel=1e-6)
    assert test["loss"] != pytest.approx(_figures(best, "test", "model")["loss"])


def test_averaging_averages_the_ema_weights(ema_run: Path, tmp_path: Path) -> None:
    paths = checkpoint_paths(ema_run / "checkpoints")
    assert len(paths) == 2
    averaged = average_checkpoint_files(paths, parameter_names)
    assert EMA_KEY not in averaged
    inputs = [load_checkpoint(path) for path in paths]
    weights = averaged["model"]
    name = next(key for key in weights if key.endswith("weight") and weights[key].dim() == 2)
    mean = sum(checkpoint[EMA_KEY][name] for checkpoint in inputs) / 2
    torch.testing.assert_close(weights[name], mean, rtol=0, atol=1e-7)
    assert torch.equal(weights_for_inference(averaged)[name], weights[name])

    raw_config = yaml.safe_load(inputs[0]["config"])
    raw_config["trainer"]["ema_eval"] = False
    raw = tmp_path / "raw.pt"
    torch.save({**inputs[0], "config": yaml.safe_dump(raw_config)}, raw)
    with pytest.raises(
        ValueError,
        match=r"step_00000004\.pt decodes with its EMA weights \(trainer\.ema_eval\) but "
        r".*raw\.pt with its trained weights; only checkpoints of one run",
    ):
        average_checkpoint_files([raw, paths[1]], parameter_names)


RESUME_RUN = (
    "experiment=toy_reverse",
    "trainer.max_steps=8",
    "trainer.eval_every=4",
    "model.dropout=0.1",
    "data.max_tokens=64",
    "attention=performer",
    "model.linear.redraw_interval=3",
    "model.linear.nb_features=16",
    "trainer.ema_decay=0.9",
    "trainer.ema_start=2",
)


def test_a_resumed_run_has_the_losses_and_the_ema_of_an_unbroken_one(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*RESUME_RUN), tmp_path / "unbroken")

    run = tmp_path / "interrupted"
    first = record_losses(monkeypatch, stop_after=3)
    train(compose_config(*RESUME_RUN), run)
    assert json.loads((run / "metrics.json").read_text())["step"] == 3
    second = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*RESUME_RUN, "trainer.resume=auto"), run)
    assert first + second == unbroken

    for name in ("step_00000008.pt", "best.pt"):
        expected = load_checkpoint(tmp_path / "unbroken" / "checkpoints" / name)
        resumed = load_checkpoint(run / "checkpoints" / name)
        for key in (EMA_KEY, "model"):
            assert expected[key].keys() == resumed[key].keys()
            for weight, tensor in expected[key].items():
                assert torch.equal(resumed[key][weight], tensor), (name, key, weight)
    unbroken_metrics = json.loads((tmp_path / "unbroken" / "metrics.json").read_text())
    resumed_metrics = json.loads((run / "metrics.json").read_text())
    assert resumed_metrics["test"] == unbroken_metrics["test"]


@pytest.fixture(scope="module")
def plain_run(train_run: TrainRun) -> Path:
    return train_run("plain", *RUN)


def _files(run: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    ("which", "overrides", "message"),
    [
        (
            "plain",
            EMA,
            r"was trained with trainer\.ema_decay=None but now trainer\.ema_decay=0\.8: a resume "
            r"may change the EMA's decay, not switch the EMA on or off; resume with "
            r"trainer\.ema_decay=null",
        ),
        (
            "ema",
            (),
            r"was trained with trainer\.ema_decay=0\.8 but now trainer\.ema_decay=None: .*; "
            r"resume with trainer\.ema_decay=0\.8, or start a fresh run dir",
        ),
        (
            "ema",
            (*EMA, "trainer.ema_eval=false"),
            r"was validated with trainer\.ema_eval=True but now trainer\.ema_eval=False: its "
            r"best figure and best\.pt are of those weights; resume with trainer\.ema_eval=true",
        ),
    ],
    ids=["switched-on", "switched-off", "ema-eval-changed"],
)
def test_a_resume_may_not_switch_the_ema_on_or_off_or_change_ema_eval(
    which: str,
    overrides: tuple[str, ...],
    message: str,
    ema_run: Path,
    plain_run: Path,
    compose_config: Compose,
) -> None:
    run = ema_run if which == "ema" else plain_run
    before = _files(run)
    resumed = compose_config(*RUN, "trainer.max_steps=6", *overrides, "trainer.resume=auto")
    with pytest.raises(ValueError, match=message):
        train(resumed, run)
    assert _files(run) == before


def test_a_resume_may_change_the_decay(
    ema_run: Path, compose_config: Compose, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(ema_run, run)
    saved = load_checkpoint(run / "checkpoints" / "step_00000004.pt")[EMA_KEY]
    resumed = compose_config(
        *RUN, "trainer.max_steps=5", "trainer.ema_decay=0.5", "trainer.resume=auto"
    )
    train(resumed, run)
    step5 = load_checkpoint(run / "checkpoints" / "step_00000005.pt")
    for name, weight in step5["model"].items():
        if not weight.is_floating_point():
            continue
        torch.testing.assert_close(step5[EMA_KEY][name], 0.5 * saved[name] + 0.5 * weight)


def test_a_run_rebuilt_from_an_ema_checkpoint_decodes_with_the_ema_weights(
    tmp_path: Path,
) -> None:
    """seq2seq-generate, seq2seq-evaluate --checkpoint and seq2seq-export all rebuild the
    run through `rebuild_run`: under `trainer.ema_eval` it holds the EMA weights."""
    state = {"w": torch.ones(2), "b": torch.zeros(2)}
    ema = {"w": torch.full((2,), 0.5), "b": torch.zeros(2)}
    checkpoint = {"model": state, "ema": ema, "config": "trainer:\n  ema_decay: 0.9\n"}
    weights = inference_weights(checkpoint)
    assert all(torch.equal(weights[name], ema[name]) for name in ema)
    checkpoint["config"] = "trainer:\n  ema_decay: 0.9\n  ema_eval: false\n"
    weights = inference_weights(checkpoint)
    assert all(torch.equal(weights[name], state[name]) for name in state)
