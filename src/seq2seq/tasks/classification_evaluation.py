"""Classification evaluation and prediction: logits for every input, the label
metrics on the predicted labels, per-class figures and a confusion-matrix image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.data.batching import length_sorted_chunks
from seq2seq.evaluation import score
from seq2seq.evaluation.labels import confusion, per_class
from seq2seq.evaluation.plots import confusion_figure, figure_image
from seq2seq.tasks.classification_batches import INPUT_IDS, classification_loss, collate_inputs
from seq2seq.training.evaluator import EvaluationResult
from seq2seq.training.precision import autocast


def class_log_probabilities(
    model: nn.Module,
    rows: Sequence[Sequence[int]],
    *,
    pad_id: int,
    max_tokens: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> Tensor:
    """`(N, C)` float32 log-probabilities of every input row, in batches of similar length."""
    probabilities: list[Tensor | None] = [None] * len(rows)
    with torch.no_grad(), autocast(device, autocast_dtype):
        for chunk in length_sorted_chunks([len(row) for row in rows], max_tokens):
            batch = collate_inputs([{INPUT_IDS: rows[i]} for i in chunk], pad_id=pad_id)
            logits = model(batch.tokens.to(device), batch.mask.to(device)).float()
            for index, row in zip(chunk, logits.log_softmax(-1).cpu(), strict=True):
                probabilities[index] = row
    return torch.stack([p for p in probabilities if p is not None])


def confusion_markdown(matrix: np.ndarray, labels: Sequence[str]) -> str:
    header = "| reference \\ predicted | " + " | ".join(labels) + " |"
    rows = [header, "|---" * (len(labels) + 1) + "|"]
    rows += [
        f"| {label} | " + " | ".join(str(int(n)) for n in row) + " |"
        for label, row in zip(labels, matrix, strict=True)
    ]
    return "\n".join(rows)


class ClassificationEvaluator:
    def __init__(
        self,
        *,
        model: nn.Module,
        inputs: list[list[int]],
        texts: list[str],
        labels: list[str],
        label_names: list[str],
        metrics: Sequence[str],
        num_samples: int,
        max_tokens: int,
        pad_id: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        label_smoothing: float,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.texts = texts
        self.labels = labels
        self.label_names = label_names
        self.metrics = list(metrics)
        self.num_samples = num_samples
        self.max_tokens = max_tokens
        self.pad_id = pad_id
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.label_smoothing = label_smoothing

    def evaluate(self, step: int) -> EvaluationResult:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            log_probs = class_log_probabilities(
                model,
                self.inputs,
                pad_id=self.pad_id,
                max_tokens=self.max_tokens,
                device=self.device,
                autocast_dtype=self.autocast_dtype,
            )
        finally:
            model.train(was_training)
        index = {name: i for i, name in enumerate(self.label_names)}
        targets = torch.tensor([index[label] for label in self.labels])
        sums = classification_loss(log_probs, targets, smoothing=self.label_smoothing)
        predictions = [self.label_names[i] for i in log_probs.argmax(-1).tolist()]
        figures = {"loss": float(sums.loss) / max(sums.tokens, 1)}
        figures.update(score(predictions, [[label] for label in self.labels], self.metrics))
        matrix = confusion(predictions, self.labels, self.label_names)
        details = {
            "per_class": {
                label: asdict(figure)
                for label, figure in per_class(predictions, self.labels).items()
            },
            "confusion": {"labels": self.label_names, "counts": matrix.tolist()},
        }
        samples = [
            (self.texts[i], self.labels[i], predictions[i])
            for i in range(min(self.num_samples, len(predictions)))
        ]
        return EvaluationResult(
            figures=figures,
            predictions=predictions,
            samples=samples,
            details=details,
            images={"confusion": figure_image(confusion_figure(matrix, self.label_names))},
            texts={"confusion": confusion_markdown(matrix, self.label_names)},
        )
