"""The classifier's pooling on padded batches: each row of a padded batch gets the logits
(and the gradients) of its example run alone, unpadded, and those equal the pooling
written plainly here over the encoder's outputs.

Float64 and eval mode (no dropout), so the only differences left are rounding; a pooling
that lets padding in (a mean over the padded length, a max over padded positions, the
last position instead of the first) moves the padded rows by far more than `ATOL`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.model.classifier import POOLINGS
from support.tiny_models import padded_tokens

# Length-1 rows at either end of the batch and in its middle; one row is unpadded.
LENGTHS = [1, 5, 7, 3, 1]
WIDTH = 7
CLASSES = 3
ATOL = 1e-12

REFERENCE_POOLS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda hidden: hidden.mean(0),
    "max": lambda hidden: hidden.max(0).values,
    "cls": lambda hidden: hidden[0],
}
"""Pooling of one unpadded example, `hidden: (L, D)` -> `(D,)`; a new pooling needs an
entry here."""


def tiny_classifier(
    make_config: Callable[..., Any], make_model: Callable[..., Any], pooling: str
) -> Any:
    """A tiny `EncoderClassifier` with `pooling`, in float64 and eval mode."""
    cfg = make_config(kind="encoder_classifier", pooling=pooling)
    return make_model(cfg, num_classes=CLASSES).double().eval()


def padded_batch() -> tuple[Tensor, Tensor]:
    """`tokens, mask: (B, WIDTH)`, rows of `LENGTHS` real tokens, PAD after."""
    return padded_tokens(LENGTHS, WIDTH, torch.Generator().manual_seed(0))


def alone(tokens: Tensor, mask: Tensor, row: int) -> tuple[Tensor, Tensor]:
    """Row `row` of a padded batch as a batch of one, its padding cut off: `(1, L)` each."""
    length = int(mask[row].sum())
    return tokens[row : row + 1, :length], mask[row : row + 1, :length]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_rows_match_each_example_alone(
    make_config: Callable[..., Any], make_model: Callable[..., Any], pooling: str
) -> None:
    model = tiny_classifier(make_config, make_model, pooling)
    tokens, mask = padded_batch()
    assert (~mask).any(), "the batch must have padding"
    with torch.no_grad():
        batched = model(tokens, mask)  # (B, C)
        separate = torch.cat([model(*alone(tokens, mask, row)) for row in range(len(LENGTHS))])
    # A mismatch's message gives its index (row, class); the row's length is LENGTHS[row].
    torch.testing.assert_close(batched, separate, rtol=0.0, atol=ATOL)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_an_example_alone_pools_as_written_plainly(
    make_config: Callable[..., Any], make_model: Callable[..., Any], pooling: str
) -> None:
    model = tiny_classifier(make_config, make_model, pooling)
    tokens, mask = padded_batch()
    with torch.no_grad():
        for row in range(len(LENGTHS)):
            example, example_mask = alone(tokens, mask, row)
            hidden = model.encoder(example, example_mask)[0]  # (L, D)
            expected = model.head(REFERENCE_POOLS[pooling](hidden))  # (C,)
            torch.testing.assert_close(
                model(example, example_mask)[0], expected, rtol=0.0, atol=ATOL
            )


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padded_rows_get_the_gradients_of_each_example_alone(
    make_config: Callable[..., Any], make_model: Callable[..., Any], pooling: str
) -> None:
    model = tiny_classifier(make_config, make_model, pooling)
    tokens, mask = padded_batch()
    # Random weights on every logit, so no row's gradient can hide behind another's.
    weights = torch.randn(len(LENGTHS), CLASSES, dtype=torch.float64)

    (model(tokens, mask) * weights).sum().backward()
    batched = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    for row in range(len(LENGTHS)):
        (model(*alone(tokens, mask, row)) * weights[row]).sum().backward()
    separate = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    assert batched.keys() == separate.keys()
    for name, gradient in separate.items():
        torch.testing.assert_close(batched[name], gradient, rtol=0.0, atol=ATOL, msg=name)
