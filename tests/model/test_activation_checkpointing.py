"""Activation checkpointing (`trainer.activation_checkpointing`): every layer recomputed in
the backward pass. Against the same model without it: the same losses and gradients under
dropout (the recomputation redraws the same masks, and the RNG ends where it would have),
far fewer bytes kept for backward in training, and nothing changed in evaluation. The
trainer's flag and resume: tests/training/test_resume.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

MODELS = [
    pytest.param({}, id="softmax-seq2seq"),
    pytest.param(
        {"encoder": "linear", "decoder": "causal_linear", "cross": "linear", "position": "rotary"},
        id="performer-rotary-seq2seq",
    ),
    pytest.param({"kind": "decoder_lm", "decoder": "causal_linear"}, id="causal-linear-lm"),
    pytest.param({"kind": "encoder_classifier", "norm": "rmsnorm"}, id="classifier"),
]


def loss_of(model: Any, batch: Any) -> Tensor:
    """A scalar depending on every output of the model's kind."""
    kind = type(model).__name__
    if kind == "EncoderClassifier":
        return model(batch.src, batch.src_mask).square().mean()
    if kind == "DecoderLanguageModel":
        return model(batch.tgt, batch.tgt_mask).log_softmax(-1)[batch.tgt_mask].mean()
    logits = model(batch.src, batch.src_mask, batch.tgt, batch.tgt_mask)
    return logits.log_softmax(-1)[batch.tgt_mask].mean()


def train_twice(model: Any, batch: Any, *, checkpointing: bool) -> tuple[list[Tensor], ...]:
    """Two SGD steps from seed 0: the losses, the gradients of the second step and the CPU
    RNG state after it."""
    model.checkpoint_activations(checkpointing)
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        losses.append(loss.detach())
        gradients = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        optimizer.step()
    return losses, gradients, [torch.get_rng_state()]


@pytest.mark.parametrize("fields", MODELS)
def test_checkpointing_keeps_losses_gradients_and_rng(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    fields: dict[str, Any],
) -> None:
    cfg = make_config(dropout=0.2, **fields)
    if "softmax" in (cfg.encoder.self_attention, cfg.decoder.self_attention):
        cfg.attention_dropout = 0.2
    batch = make_batch([7, 3, 5], [6, 6, 2])
    initial = make_model(cfg, num_classes=3).state_dict()
    results = {}
    for checkpointing in (False, True):
        model = make_model(cfg, num_classes=3).train()
        model.load_state_dict(initial)
        results[checkpointing] = train_twice(model, batch, checkpointing=checkpointing)
    (plain_losses, plain_grads, plain_rng), (losses, grads, rng) = results[False], results[True]
    torch.testing.assert_close(losses, plain_losses, atol=1e-6, rtol=1e-5)
    assert len(grads) == len(plain_grads)
    for got, want in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert torch.equal(rng[0], plain_rng[0])


def saved_bytes(model: Any, batch: Any) -> int:
    """Bytes of the distinct storages autograd keeps for backward, outside the checkpointed
    regions (whose own hooks keep nothing but their inputs)."""
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_of(model, batch)
    loss.backward()
    return sum(storages.values())


def test_checkpointing_keeps_far_less_for_backward_in_training_only(
    make_config: Callable[..., Any], make_model: Callable[..., Any], make_batch: Callable[..., Any]
) -> None:
    cfg = make_config(kind="decoder_lm", layers=4, dropout=0.1)
    model = make_model(cfg)
    batch = make_batch([1], [48, 48])
    kept = {}
    for mode in ("train", "eval"):
        getattr(model, mode)()
        for checkpointing in (False, True):
            model.checkpoint_activations(checkpointing)
            kept[mode, checkpointing] = saved_bytes(model, batch)
    assert kept["train", True] < kept["train", False] / 3, kept
    assert kept["eval", True] == kept["eval", False], kept
