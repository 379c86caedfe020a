"""Language-modeling batches: blocks split into the inputs and the next tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from seq2seq.tasks.language_modeling_data import BLOCK
from seq2seq.tokenizer import PAD_ID


@dataclass
class LanguageModelBatch:
    """tokens: `(B, L)` inputs, padded on the right; targets: `(B, L)` the next tokens, PAD
    where none.

    No padding mask goes to the model: under causal attention a position sees itself and
    the positions before it, and a row's padding comes after all its real tokens, so it
    never reaches a position that is scored. Without a mask softmax attention runs SDPA's
    causal kernel instead of an explicit `(B, 1, L, L)` mask (1.3x the training tokens/s
    at 1,024 tokens and 1.9x at 4,096 on a CPU: `scripts/bench_long.py`, softmax/masked)."""

    tokens: Tensor
    targets: Tensor

    @property
    def num_targets(self) -> int:
        return int((self.targets != PAD_ID).sum())

    @property
    def num_tokens(self) -> int:
        return self.num_targets

    def to(self, device: torch.device) -> LanguageModelBatch:
        return LanguageModelBatch(self.tokens.to(device), self.targets.to(device))


def collate_blocks(examples: list[dict[str, Any]]) -> LanguageModelBatch:
    """Blocks of up to B + 1 tokens -> inputs (the first L) and targets (the last L)."""
    rows = [list(example[BLOCK]) for example in examples]
    width = max(len(row) for row in rows) - 1
    tokens = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    targets = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row) - 1] = torch.tensor(row[:-1])
        targets[i, : len(row) - 1] = torch.tensor(row[1:])
    return LanguageModelBatch(tokens, targets)
