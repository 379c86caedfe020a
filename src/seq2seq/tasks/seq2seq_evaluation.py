"""Seq2seq evaluation and decoding: teacher-forced loss, then decoding and the metrics on the
decoded strings (the same scoring code as seq2seq-evaluate); `decode_sources` serves
seq2seq-generate with the same batching."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import torch
from tqdm import tqdm

from seq2seq.config.generation import GenerationConfig
from seq2seq.data.batching import collate_pairs, length_sorted_chunks
from seq2seq.evaluation import score
from seq2seq.generation import Hypothesis, generate
from seq2seq.generation.limits import AT_LIMIT, warn_at_limit
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seq2seq.training.evaluator import EvaluationResult
from seq2seq.training.loss import label_smoothed_cross_entropy, perplexity
from seq2seq.training.precision import autocast

log = logging.getLogger("seq2seq.generate")


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


def evaluation_set(
    split: datasets.Dataset, target_tokenizer: Tokenizer, name: str = "split"
) -> EvaluationSet:
    """One entry per distinct source; the targets of repeated sources become alternative
    references (a word with several pronunciations, a sentence with several translations),
    logged with their count: predictions then hold one line per distinct source.

    References are normalized as the target tokenizer's `decode` writes hypotheses (NFKC,
    whitespace collapsed), so a perfect output matches its reference exactly."""
    first: dict[str, int] = {}
    references: list[list[str]] = []
    rows = split.select_columns(["source", "target", "source_ids", "target_ids"]).to_dict()
    keep: list[int] = []
    for index, (source, target) in enumerate(zip(rows["source"], rows["target"], strict=True)):
        reference = target_tokenizer.normalize(target)
        if source in first:
            alternatives = references[first[source]]
            if reference not in alternatives:
                alternatives.append(reference)
            continue
        first[source] = len(keep)
        keep.append(index)
        references.append([reference])
    repeated = len(rows["source"]) - len(keep)
    if repeated:
        log.info(
            "%s: %d of %d examples repeat an earlier source; each distinct source is decoded "
            "and scored once, with the targets of its repeats as alternative references "
            "(%d scored)",
            name,
            repeated,
            len(rows["source"]),
            len(keep),
        )
    return EvaluationSet(
        source_ids=[rows["source_ids"][i] for i in keep],
        target_ids=[rows["target_ids"][i] for i in keep],
        sources=[rows["source"][i] for i in keep],
        references=references,
    )


class Seq2SeqEvaluator:
    def __init__(
        self,
        *,
        model: EncoderDecoderTransformer,
        data: EvaluationSet,
        target_tokenizer: Tokenizer,
        generation: GenerationConfig,
        metrics: Sequence[str],
        num_samples: int,
        max_tokens: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        label_smoothing: float,
        split: str,
        limit_advice: str,
    ) -> None:
        """`split`: the split's role; on `test`, outputs that stopped at their length
        limit get one warning line with `limit_advice` (validation counts them in its
        figures)."""
        self.model = model
        self.split = split
        self.limit_advice = limit_advice
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

    @torch.no_grad()
    def evaluate(self, step: int) -> EvaluationResult:
        model = self.model
        was_training = model.training
        model.eval()
        nll_sum, loss_sum, tokens = 0.0, 0.0, 0
        predictions: list[str] = [""] * len(self.data.sources)
        at_limit = 0
        try:
            with autocast(self.device, self.autocast_dtype):
                for indices in self.chunks:
                    examples = [
                        {
                            "source_ids": self.data.source_ids[i],
                            "target_ids": self.data.target_ids[i],
                        }
                        for i in indices
                    ]
                    batch = collate_pairs(examples, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
                    batch = batch.to(self.device)
                    logits = model(
                        batch.src_tokens, batch.src_mask, batch.tgt_input, batch.tgt_mask
                    )
                    sums = label_smoothed_cross_entropy(
                        logits, batch.tgt_output, pad_id=PAD_ID, smoothing=self.label_smoothing
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
                        at_limit += nbest[0].at_limit
        finally:
            model.train(was_training)
        figures = {"loss": loss_sum / max(tokens, 1), "ppl": perplexity(nll_sum, tokens)}
        figures.update(score(predictions, self.data.references, self.metrics))
        figures[AT_LIMIT] = float(at_limit)
        if self.split == "test":
            warn_at_limit(at_limit, len(predictions), "test outputs", self.limit_advice)
        samples = [
            (self.data.sources[i], self.data.references[i][0], predictions[i])
            for i in range(min(self.num_samples, len(predictions)))
        ]
        return EvaluationResult(figures=figures, predictions=predictions, samples=samples)


def pad_sources(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """rows: B non-empty id lists -> tokens (B, S) long padded with PAD_ID, mask (B, S) bool."""
    lengths = torch.tensor([len(row) for row in rows])
    width = int(lengths.max())
    tokens = torch.tensor([[*row, *[PAD_ID] * (width - len(row))] for row in rows])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return tokens, mask


def decode_sources(
    model: EncoderDecoderTransformer,
    sources: Sequence[Sequence[int]],
    settings: GenerationConfig,
    *,
    max_tokens: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> list[list[Hypothesis]]:
    """N-best lists in the order of `sources`; an empty source gets an empty list.

    Sources are decoded in batches of similar length (less padding), then put back.
    """
    results: list[list[Hypothesis]] = [[] for _ in sources]
    real = [i for i, ids in enumerate(sources) if ids]
    chunks = length_sorted_chunks([len(sources[i]) for i in real], max_tokens)
    with (
        tqdm(total=len(real), desc="generating", unit="src", file=sys.stderr) as progress,
        autocast(device, autocast_dtype),
    ):
        for chunk in chunks:
            indices = [real[i] for i in chunk]
            tokens, mask = pad_sources([sources[i] for i in indices])
            hypotheses = generate(
                model,
                tokens.to(device),
                mask.to(device),
                settings,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                pad_id=PAD_ID,
                source_ids=indices,
            )
            for index, nbest in zip(indices, hypotheses, strict=True):
                results[index] = nbest
            progress.update(len(indices))
    return results
