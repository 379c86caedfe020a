"""Classification figures from label strings: the confusion matrix, per-class precision,
recall and F1, and their macro average."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassFigures:
    precision: float
    recall: float
    f1: float
    support: int
    """References of this class."""


def confusion(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """`(C, C)` counts: row = reference label, column = predicted label, in `labels`'
    order; a prediction outside `labels` counts in no column (it is wrong for its row)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for predicted, reference in zip(predictions, references, strict=True):
        if predicted in index:
            matrix[index[reference], index[predicted]] += 1
    return matrix


def per_class(predictions: Sequence[str], references: Sequence[str]) -> dict[str, ClassFigures]:
    """Precision, recall and F1 of every label that is a reference or a prediction, in
    percent (as scikit-learn computes them; 0 where a ratio has nothing to divide)."""
    labels = sorted(set(references) | set(predictions))
    matrix = confusion(predictions, references, labels)
    result = {}
    for i, label in enumerate(labels):
        true_positive = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        support = int(matrix[i, :].sum()) + sum(
            1
            for p, r in zip(predictions, references, strict=True)
            if r == label and p not in labels
        )
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[label] = ClassFigures(100 * precision, 100 * recall, 100 * f1, support)
    return result


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """The unweighted mean F1 over every label that is a reference or a prediction."""
    figures = per_class(predictions, references)
    return sum(figure.f1 for figure in figures.values()) / len(figures)
