"""Validation and test evaluation: teacher-forced loss and perplexity, then decoding and
the task's metrics on the decoded strings (the same scoring code as seq2seq-evaluate)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from seq2seq.data.batching import Batch, collate, length_sorted_chunks
from seq2seq.evaluation import score
from seq2seq.generation import GenerationSettings, generate
from seq2seq.model.seq2seq import EncoderDecoderTransformer
from seq2seq.tokenizer.sentencepiece import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seq2seq.training.loss import label_smoothed_cross_entropy, perplexity


@dataclass
class EvaluationSet:
    """One split, tokenized, with its raw strings; `references[i]` may hold several."""

    source_ids: list[list[int]]
    target_ids: list[list[int]]
    sources: list[str]
    references: list[list[str]]

    def __post_init__(self) -> None:
        sizes = {
            len(self.source_ids),
            len(self.target_ids),
            len(self.sources),
            len(self.references),
        }
        if len(sizes) != 1:
            raise ValueError(f"evaluation set columns differ in length: {sorted(sizes)}")


@dataclass
class EvaluationResult:
    figures: dict[str, float]
    """`loss`, `ppl` and every metric."""
    predictions: list[str]
    """One hypothesis per example, in the split's order."""
    samples: list[tuple[str, str, str]] = field(default_factory=list)
    """(source, reference, prediction) of the first few examples."""

    def summary(self) -> str:
        return " | ".join(f"{name} {value:.4g}" for name, value in self.figures.items())

    def samples_markdown(self) -> str:
        rows = ["| source | reference | prediction |", "|---|---|---|"]
        rows += [f"| {s} | {r} | {p} |" for s, r, p in self.samples]
        return "\n".join(rows)


class Evaluator:
    def __init__(
        self,
        *,
        model: EncoderDecoderTransformer,
        data: EvaluationSet,
        target_tokenizer: Tokenizer,
        generation: GenerationSettings,
        metrics: Sequence[str],
        num_samples: int,
        max_tokens: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        label_smoothing: float,
    ) -> None:
        self.model = model
        self.data = data
        self.tokenizer = target_tokenizer
        self.generation = generation
        self.metrics = list(metrics)
        self.num_samples = num_samples
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.label_smoothing = label_smoothing
        lengths = [
            max(len(s), len(t) + 1) for s, t in zip(data.source_ids, data.target_ids, strict=True)
        ]
        self.chunks = length_sorted_chunks(lengths, max_tokens)

    def _batch(self, indices: list[int]) -> Batch:
        examples = [
            {"source_ids": self.data.source_ids[i], "target_ids": self.data.target_ids[i]}
            for i in indices
        ]
        return collate(
            examples,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
        ).to(self.device)

    @torch.no_grad()
    def evaluate(self, step: int) -> EvaluationResult:
        model = self.model
        was_training = model.training
        model.eval()
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        nll_sum, loss_sum, tokens = 0.0, 0.0, 0
        predictions: list[str] = [""] * len(self.data.sources)
        try:
            with autocast:
                for indices in self.chunks:
                    batch = self._batch(indices)
                    logits = model(
                        batch.src_tokens, batch.src_mask, batch.tgt_input, batch.tgt_mask
                    )
                    sums = label_smoothed_cross_entropy(
                        logits,
                        batch.tgt_output,
                        pad_id=PAD_ID,
                        smoothing=self.label_smoothing,
                    )
                    nll_sum += float(sums.nll)
                    loss_sum += float(sums.loss)
                    tokens += sums.tokens
                    hypotheses = generate(
                        model,
                        batch.src_tokens,
                        batch.src_mask,
                        self.generation,
                        bos_id=BOS_ID,
                        eos_id=EOS_ID,
                        pad_id=PAD_ID,
                        source_ids=indices,
                    )
                    for index, nbest in zip(indices, hypotheses, strict=True):
                        predictions[index] = self.tokenizer.decode(nbest[0].tokens)
        finally:
            model.train(was_training)
        figures = {"loss": loss_sum / max(tokens, 1), "ppl": perplexity(nll_sum, tokens)}
        figures.update(score(predictions, self.data.references, self.metrics))
        samples = [
            (self.data.sources[i], self.data.references[i][0], predictions[i])
            for i in range(min(self.num_samples, len(predictions)))
        ]
        return EvaluationResult(figures=figures, predictions=predictions, samples=samples)
