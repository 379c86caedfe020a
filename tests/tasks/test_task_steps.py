"""Every task builds its model with every attention kind its stacks take, every residual
scheme, every activation and every position kind, and takes a training step through its own data, batches and
loss: finite loss, a gradient on every parameter, and a lower loss after a few steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch
from omegaconf import DictConfig

from seq2seq.config.model import Activation, Norm, NormPosition, Position
from seq2seq.jobs.checks import checked_config
from seq2seq.tasks import Task, task_class

Compose = Callable[..., DictConfig]

RECIPES = {
    "seq2seq": ("experiment=toy_reverse",),
    "classification": ("experiment=classify_brackets",),
    "language_modeling": ("experiment=lm_dyck", "data.block_size=16"),
}
ATTENTIONS = {
    # (encoder self, decoder self, cross) choices each task's stacks take.
    "seq2seq": [("softmax", "softmax", "softmax"), ("linear", "causal_linear", "linear")],
    "classification": [("softmax", None, None), ("linear", None, None)],
    "language_modeling": [(None, "softmax", None), (None, "causal_linear", None)],
}
NORMS = [
    (Norm.layernorm, NormPosition.pre),
    (Norm.layernorm, NormPosition.post),
    (Norm.rmsnorm, NormPosition.pre),
    (Norm.rmsnorm, NormPosition.post),
    (Norm.rezero, NormPosition.pre),
    (Norm.prescalenorm, NormPosition.pre),
]
ACTIVATIONS = list(Activation)
FEATURE_MAPS = ["favor", "elu", "relu"]
POSITIONS = list(Position)


def combinations(task: str) -> Iterator[Any]:
    """Every attention choice, norm, activation, feature map and position kind at least
    once (cycled together, not their product)."""
    attentions = ATTENTIONS[task]
    count = max(len(attentions), len(NORMS), len(ACTIVATIONS), len(FEATURE_MAPS), len(POSITIONS))
    for i in range(count):
        norm, position = NORMS[i % len(NORMS)]
        activation = ACTIVATIONS[i % len(ACTIVATIONS)]
        positions = POSITIONS[i % len(POSITIONS)]
        yield pytest.param(
            task,
            attentions[i % len(attentions)],
            norm,
            position,
            activation,
            FEATURE_MAPS[i % len(FEATURE_MAPS)],
            positions,
            id=f"{task}-{'-'.join(a for a in attentions[i % len(attentions)] if a)}-{norm}-{position}-{activation}-{positions}",
        )


_PREPARED: dict[str, Task] = {}


def _prepared(task: str, compose_config: Compose) -> Task:
    """The task with its data prepared, once per task for the module."""
    if task not in _PREPARED:
        cfg = checked_config(compose_config(*RECIPES[task]))
        prepared = task_class(cfg.task)(cfg)
        prepared.prepare()
        _PREPARED[task] = prepared
    return _PREPARED[task]


@pytest.mark.parametrize(
    ("task", "attention", "norm", "position", "activation", "feature_map", "positions"),
    [param for task in RECIPES for param in combinations(task)],
)
def test_every_choice_builds_and_trains_for_every_task(
    compose_config: Compose,
    task: str,
    attention: tuple[str | None, str | None, str | None],
    norm: Norm,
    position: NormPosition,
    activation: Activation,
    feature_map: str,
    positions: Position,
) -> None:
    base = _prepared(task, compose_config)
    encoder, decoder, cross = attention
    model_cfg = base.cfg.model
    linear = any(kind in ("linear", "causal_linear") for kind in attention)
    model_cfg = replace(
        model_cfg,
        norm=norm,
        norm_position=position,
        activation=activation,
        position=positions,
        dropout=0.0,
        encoder=replace(model_cfg.encoder, self_attention=encoder or "softmax"),
        decoder=replace(
            model_cfg.decoder,
            self_attention=decoder or "softmax",
            cross_attention=cross or "softmax",
        ),
        linear=replace(model_cfg.linear, feature_map=feature_map if linear else None),
    )
    task_obj = type(base).__new__(type(base))
    task_obj.__dict__.update(base.__dict__)
    task_obj.cfg = replace(base.cfg, model=model_cfg)
    torch.manual_seed(0)
    model = task_obj.build_model().train()
    if norm == Norm.rezero:  # ReZero starts every branch closed: open them to test them
        for module in model.modules():
            if hasattr(module, "alpha"):
                torch.nn.init.constant_(module.alpha, 0.5)
    stream = task_obj.train_batches(rank=0, world_size=1)
    batch = next(iter(stream.epoch(0, 0)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(4):
        sums = task_obj.loss(model, batch)
        loss = sums.loss / batch.num_targets
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            missing = [
                name
                for name, p in model.named_parameters()
                if p.grad is None or not torch.isfinite(p.grad).all()
            ]
            assert not missing, missing
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
