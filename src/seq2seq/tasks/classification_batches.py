"""Classification batches: inputs padded into a `ClassificationBatch`, and the loss over its
labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seq2seq.training.loss import label_smoothed_cross_entropy

INPUT_IDS = "input_ids"
LABEL_ID = "label_id"
NO_PAD = -1
"""Labels have no padding: every example is a target."""


@dataclass
class ClassificationBatch:
    """tokens, mask: `(B, S)`; labels: `(B,)` class indices."""

    tokens: Tensor
    mask: Tensor
    labels: Tensor

    @property
    def num_targets(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())

    def to(self, device: torch.device) -> ClassificationBatch:
        return ClassificationBatch(
            self.tokens.to(device), self.mask.to(device), self.labels.to(device)
        )


def collate_inputs(examples: list[dict[str, Any]], *, pad_id: int) -> ClassificationBatch:
    """Pads `input_ids` on the right; `label_id` (-1 when unknown: prediction) stacks."""
    rows = [list(example[INPUT_IDS]) for example in examples]
    width = max(len(row) for row in rows)
    tokens = torch.tensor([row + [pad_id] * (width - len(row)) for row in rows])
    lengths = torch.tensor([len(row) for row in rows])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    labels = torch.tensor([example.get(LABEL_ID, NO_PAD) for example in examples])
    return ClassificationBatch(tokens, mask, labels)


def classification_loss(
    logits: Tensor, labels: Tensor, *, smoothing: float
) -> Any:  # LossSums, summed over the examples
    return label_smoothed_cross_entropy(
        logits.unsqueeze(1), labels.unsqueeze(1), pad_id=NO_PAD, smoothing=smoothing
    )
