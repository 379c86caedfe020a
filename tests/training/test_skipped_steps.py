"""Steps that are not taken, driven through `Trainer.train_step` on a tiny model.

A non-finite step leaves the optimizer, the schedule, the step count and the weights
where they were; the culprit is found in whichever micro-batch produced it, and named by
the parameter whose gradient went bad, not by clipping's NaN spread; under fp16 an
overflow belongs to the GradScaler until its scale falls below the floor, while a NaN
loss is handled by `trainer.nonfinite` at once.
"""

from __future__ import annotations

import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config.model import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.config.training import OptimConfig, ScheduleConfig, TrainerConfig
from seq2seq.data.batching import PairBatch
from seq2seq.model.build import build_model
from seq2seq.training.checkpoint import CheckpointManager
from seq2seq.training.distributed import Distributed
from seq2seq.training.loss import LossSums, label_smoothed_cross_entropy
from seq2seq.training.nonfinite import MIN_LOSS_SCALE, NonFiniteError
from seq2seq.training.optim import build_optimizer
from seq2seq.training.schedule import build_scheduler
from seq2seq.training.state import Monitor
from seq2seq.training.trainer import Trainer
from support.tiny_models import reversal_batches

VOCAB = 13
PAD, BOS, EOS = 0, 1, 2


def _model() -> nn.Module:
    cfg = ModelConfig(
        d_model=16,
        heads=2,
        d_ff=32,
        dropout=0.0,
        max_len=32,
        encoder=EncoderConfig(layers=1),
        decoder=DecoderConfig(layers=2),
    )
    torch.manual_seed(0)
    return build_model(cfg, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, pad_id=PAD, seed=0)


def _batches(sizes: list[int]) -> list[PairBatch]:
    return reversal_batches(sizes, vocab=VOCAB)


def _trainer(
    model: nn.Module, batches: list[PairBatch], *, grad_accum: int = 1, **trainer: Any
) -> Trainer:
    cfg = TrainerConfig(max_steps=100, grad_accum=grad_accum, progress="off", **trainer)
    optimizer = build_optimizer(model, OptimConfig(name="sgd", lr=0.1, weight_decay=0.0))
    scheduler = build_scheduler(
        optimizer, ScheduleConfig(name="inverse_sqrt", warmup_steps=4), max_steps=100
    )

    def epoch(_: int, start: int) -> Iterator[PairBatch]:
        yield from batches[start:]

    def loss(model: nn.Module, batch: PairBatch) -> LossSums:
        logits = model(batch.src_tokens, batch.src_mask, batch.tgt_input, batch.tgt_mask)
        return label_smoothed_cross_entropy(
            logits, batch.tgt_output, pad_id=PAD, smoothing=cfg.label_smoothing
        )

    return Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=types.SimpleNamespace(epoch=epoch, layout=dict),  # type: ignore[arg-type]
        loss=loss,
        evaluator=types.SimpleNamespace(),  # type: ignore[arg-type]
        monitor=Monitor("loss", higher_is_better=False),
        checkpoints=CheckpointManager(Path(tempfile.mkdtemp()), keep_last=1),
        logger=None,
        cfg=cfg,
        device=torch.device("cpu"),
        checkpoint_extras={},
        distributed=Distributed(),
    )


def _poison_rows(module: nn.Module, rows: int, value: float = float("nan")) -> None:
    """`module` outputs `value` for batches of `rows` examples, whatever the grad mode."""

    def hook(_: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
        return output + value if output.shape[0] == rows else None

    module.register_forward_hook(hook)


def _weights(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def test_a_skipped_step_changes_nothing_but_the_data_position() -> None:
    model = _model()
    trainer = _trainer(model, _batches([2, 3, 2]), nonfinite="skip")
    _poison_rows(model.decoder.layers[0].feedforward, rows=3)  # type: ignore[index, union-attr]
    groups = trainer._micro_batches()
    first = trainer.train_step(next(groups))
    assert first is not None and trainer.state.step == 1
    weights, lr = _weights(model), trainer.optimizer.param_groups[0]["lr"]

    assert trainer.train_step(next(groups)) is None
    assert trainer.state.step == 1 and trainer.state.skipped_steps == 1
    assert torch.equal(_weights(model), weights)
    assert trainer.optimizer.param_groups[0]["lr"] == lr  # the schedule did not move
    second = trainer.train_step(next(groups))
    # The next step taken is step 2 and uses step 2's rate (warmup: 2/4 of the peak).
    assert second is not None and trainer.state.step == 2
    assert second["lr"] == pytest.approx(0.1 * 2 / 4)


def test_the_culprit_is_found_in_a_later_micro_batch() -> None:
    model = _model()
    trainer = _trainer(model, _batches([2, 3]), grad_accum=2, nonfinite="stop")
    _poison_rows(model.decoder.layers[1].feedforward, rows=3)  # type: ignore[index, union-attr]
    with pytest.raises(
        NonFiniteError, match=r"first non-finite output: decoder\.layers\.1\.feedforward "
    ):
        trainer.train_step(next(trainer._micro_batches()))


@pytest.mark.parametrize("clip_norm", [0.0, 1.0])
def test_a_bad_gradient_is_named_by_its_parameter(clip_norm: float) -> None:
    model = _model()
    trainer = _trainer(model, _batches([2]), nonfinite="stop", clip_norm=clip_norm)
    weight = model.decoder.layers[1].feedforward.w_in.weight  # type: ignore[index, union-attr]
    weight.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(
        NonFiniteError,
        match=r"outputs finite; first non-finite gradient: decoder\.layers\.1\.feedforward\.w_in\.weight",
    ):
        trainer.train_step(next(trainer._micro_batches()))


def _fp16_trainer(model: nn.Module, batches: list[PairBatch], **trainer: Any) -> Trainer:
    """A trainer whose GradScaler is on, as under fp16 (simulated on CPU: no autocast)."""
    fp16 = _trainer(model, batches, **trainer)
    fp16.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4, enabled=True)
    return fp16


def test_fp16_overflow_lowers_the_scale_until_its_floor() -> None:
    model = _model()
    steps = 20
    trainer = _fp16_trainer(model, _batches([2] * steps), nonfinite="stop")
    weight = model.decoder.layers[1].feedforward.w_in.weight  # type: ignore[index, union-attr]
    weight.register_hook(lambda grad: grad * float("inf"))
    groups = trainer._micro_batches()
    weights = _weights(model)
    with pytest.raises(NonFiniteError, match=r"first non-finite gradient"):
        for _ in range(steps):
            assert trainer.train_step(next(groups)) is None
    # Halved from 2^4 until below the floor, then the policy (stop) took over.
    assert trainer.scaler.get_scale() < MIN_LOSS_SCALE <= 2 * trainer.scaler.get_scale()
    assert trainer.state.step == 0 and torch.equal(_weights(model), weights)


def test_fp16_nan_loss_is_handled_at_once() -> None:
    model = _model()
    trainer = _fp16_trainer(model, _batches([2, 2]), nonfinite="stop")
    _poison_rows(model.decoder.layers[0].feedforward, rows=2)  # type: ignore[index, union-attr]
    with pytest.raises(NonFiniteError, match=r"at step 1 .*decoder\.layers\.0\.feedforward"):
        trainer.train_step(next(trainer._micro_batches()))
