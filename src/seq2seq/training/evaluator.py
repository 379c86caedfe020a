"""What the trainer asks of an evaluator, and what it gets back (the task makes both)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class EvaluationResult:
    figures: dict[str, float]
    """Every validation figure (`loss` and the task's metrics), by name."""
    predictions: list[str]
    """One prediction per example, in the split's order (written to predictions.txt)."""
    samples: list[tuple[str, str, str]] = field(default_factory=list)
    """(input, reference, prediction) of the first few examples, shown in TensorBoard."""
    details: dict[str, Any] = field(default_factory=dict)
    """Figures that are not scalars (per-class precision and recall), for metrics.json."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """HWC uint8 images (a confusion matrix) for TensorBoard, by tag."""
    texts: dict[str, str] = field(default_factory=dict)
    """Markdown for TensorBoard's text tab (the confusion matrix's counts), by tag."""

    def summary(self) -> str:
        return " | ".join(f"{name} {value:.4g}" for name, value in self.figures.items())

    def samples_markdown(self) -> str:
        rows = ["| input | reference | prediction |", "|---|---|---|"]
        rows += [f"| {s} | {r} | {p} |" for s, r, p in self.samples]
        return "\n".join(rows)


class Evaluator(Protocol):
    """Evaluates one model on one split."""

    def evaluate(self, step: int) -> EvaluationResult: ...
