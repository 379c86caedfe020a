"""Every layer choice builds, runs forward and backward, and keeps padding finite.

The full product of choices is large, so the encoder-decoder rows cover every *pair* of
choices (attention stacks x feature map x norm x activation x position) with a small
deterministic greedy generator; every factor is read from its registry, so a new option
joins the pairs without editing this file.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.model.activations import ACTIVATIONS
from seq2seq.model.attention import FEATURE_MAPS
from seq2seq.model.embedding import POSITIONS
from seq2seq.model.norms import NORMS
from support.attention_cases import BIDIRECTIONAL, CAUSAL, CROSS
from support.tiny_models import linear_settings

FACTORS: dict[str, list[Any]] = {
    "attention": list(itertools.product(BIDIRECTIONAL, CAUSAL, CROSS)),
    "feature_map": list(FEATURE_MAPS),
    "norm": [(name, position) for name in sorted(NORMS) for position in sorted(NORMS[name])],
    "activation": sorted(ACTIVATIONS),
    "position": sorted(POSITIONS),
}

Pair = tuple[int, int, int, int]
"""(factor i, value index a, factor j > i, value index b)."""


def _pairs_of(row: dict[int, int]) -> set[Pair]:
    return {(i, row[i], j, row[j]) for i, j in itertools.combinations(sorted(row), 2)}


def gain(row: dict[int, int], factor: int, value: int, uncovered: set[Pair]) -> tuple[int, int]:
    """How many uncovered pairs `factor=value` adds to `row`; the lower value wins ties."""
    return len(_pairs_of({**row, factor: value}) & uncovered), -value


def pairwise(factors: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows covering every pair of values of every two factors (greedy, deterministic).

    Each row starts from the smallest uncovered pair, then gives every other factor, in
    order, the value that covers the most still-uncovered pairs (the lowest index on ties).
    """
    names = list(factors)
    sizes = [len(factors[name]) for name in names]
    uncovered = {
        (i, a, j, b)
        for i, j in itertools.combinations(range(len(names)), 2)
        for a in range(sizes[i])
        for b in range(sizes[j])
    }
    rows = []
    while uncovered:
        i, a, j, b = min(uncovered)
        row = {i: a, j: b}
        for f in range(len(names)):
            if f not in row:
                row[f] = max(range(sizes[f]), key=lambda v: gain(row, f, v, uncovered))
        uncovered -= _pairs_of(row)
        rows.append({names[f]: factors[names[f]][row[f]] for f in range(len(names))})
    return rows


COMBINATIONS = pairwise(FACTORS)


def combination_id(row: dict[str, Any]) -> str:
    encoder, decoder, cross = row["attention"]
    return "-".join(
        [
            f"{encoder}.{decoder}.{cross}",
            row["feature_map"],
            *row["norm"],
            row["activation"],
            row["position"],
        ]
    )


def test_pairwise_covers_every_pair_and_not_the_product() -> None:
    names = list(FACTORS)
    for first, second in itertools.combinations(names, 2):
        seen = {(repr(row[first]), repr(row[second])) for row in COMBINATIONS}
        assert len(seen) == len(FACTORS[first]) * len(FACTORS[second])
    product = 1
    for values in FACTORS.values():
        product *= len(values)
    assert len(COMBINATIONS) < product // 4


def check_gradients(model: nn.Module) -> None:
    """Every parameter gets a finite gradient, non-zero except softmax key biases (softmax
    is invariant to a shift of all scores, so `k_proj.bias` gets exactly zero there)."""
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.isfinite().all(), f"{name} has a non-finite gradient"
        if not name.endswith("k_proj.bias"):
            assert parameter.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def token_loss(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    return F.cross_entropy(logits[mask], targets[mask])


@pytest.mark.parametrize("row", COMBINATIONS, ids=combination_id)
def test_combination_trains_with_finite_gradients_and_padding(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    open_rezero: Callable[..., None],
    row: dict[str, Any],
) -> None:
    encoder, decoder, cross = row["attention"]
    cfg = make_config(
        encoder=encoder,
        decoder=decoder,
        cross=cross,
        linear=linear_settings(*row["attention"], feature_map=row["feature_map"], chunk_size=4),
        norm=row["norm"][0],
        norm_position=row["norm"][1],
        activation=row["activation"],
        position=row["position"],
        dropout=0.1,
        attention_dropout=0.1 if "softmax" in row["attention"] else 0.0,
    )
    model = make_model(cfg).train()
    open_rezero(model)
    # Row 1's source is entirely padding; targets are padded too.
    batch = make_batch([6, 0, 9], [7, 3, 5])
    memory = model.encode(batch.src, batch.src_mask)
    assert memory.isfinite().all()
    logits = model(batch.src, batch.src_mask, batch.tgt, batch.tgt_mask)
    assert logits.shape == (3, 7, 20)
    assert logits.isfinite().all()
    labels = torch.roll(batch.tgt, -1, dims=1).clamp(min=1)
    token_loss(logits, labels, batch.tgt_mask).backward()
    check_gradients(model)


def train_steps(model: nn.Module, loss_fn: Callable[[], Tensor], steps: int = 3) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        check_gradients(model)
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("encoder", BIDIRECTIONAL)
def test_encoder_classifier_trains(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    encoder: str,
    pooling: str,
) -> None:
    cfg = make_config(kind="encoder_classifier", encoder=encoder, pooling=pooling)
    model = make_model(cfg, num_classes=3).train()
    batch = make_batch([6, 0, 9, 2], [1])
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        assert model(batch.src, batch.src_mask).shape == (4, 3)

    def loss() -> Tensor:
        logits = model(batch.src, batch.src_mask)
        assert logits.isfinite().all()
        return F.cross_entropy(logits, labels)

    losses = train_steps(model, loss)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("decoder", CAUSAL)
def test_decoder_language_model_trains(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
) -> None:
    model = make_model(make_config(kind="decoder_lm", decoder=decoder)).train()
    batch = make_batch([1], [9, 4, 6])
    labels = torch.roll(batch.tgt, -1, dims=1).clamp(min=1)

    def loss() -> Tensor:
        logits = model(batch.tgt, batch.tgt_mask)
        assert logits.shape == (3, 9, 20) and logits.isfinite().all()
        return token_loss(logits, labels, batch.tgt_mask)

    losses = train_steps(model, loss)
    assert losses[-1] < losses[0]
