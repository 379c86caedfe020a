"""What the training loop keeps and needs: its counters (`TrainState`), the figure that
picks the best checkpoint (`Monitor`), and what it asks of the batches a task makes
(`TrainingBatch`, `BatchStream`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class TrainState:
    """The loop's own counters, checkpointed with everything else."""

    step: int = 0
    epoch: int = 0
    epoch_batches: int = 0
    """Batches of `epoch` already consumed: where a resumed run picks the data up."""
    best_value: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    skipped_steps: int = 0


@dataclass(frozen=True)
class Monitor:
    """The validation figure that picks the best checkpoint and drives early stopping."""

    name: str
    higher_is_better: bool

    def improved(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False  # a NaN would stay "best": nothing compares better than it
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


class TrainingBatch(Protocol):
    """What the loop needs of a batch (the task makes them): moving it, and the counts its
    loss and its throughput are summed over."""

    @property
    def num_targets(self) -> int:
        """The predictions the loss sums over (target tokens, or examples)."""
        ...

    @property
    def num_tokens(self) -> int:
        """The real tokens of the batch that training throughput counts."""
        ...

    def to(self, device: torch.device) -> TrainingBatch: ...


class BatchStream(Protocol):
    """The training batches, resumable: `epoch(e, start)` yields epoch e's batches from
    index `start` on; `layout()` is what must match for a saved position to mean the same
    batches after a resume. `state_dict()` is what else the position needs (every rank
    calls it at a checkpoint; None when `(epoch, start)` says all), restored by
    `load_state_dict` before `epoch` is called."""

    def epoch(self, epoch: int, start: int) -> Iterator[TrainingBatch]: ...

    def layout(self) -> dict[str, Any]: ...

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...
