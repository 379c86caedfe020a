"""`seq2seq`: an encoder-decoder trained from source to target text.

Data: a `source` and a `target` column (a dataset's own columns through `data.source` and
`data.target`, or a built-in task), tokenized by one shared or two separate tokenizers,
cleaned by the length limits. Batches: token-budget buckets of (source, target) pairs.
Loss: label-smoothed cross-entropy over the target tokens. Validation: teacher-forced loss
and perplexity, then decoding with the `generation` settings and `trainer.metrics` on the
decoded strings. Prediction: decoded hypotheses, one per input line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import datasets
import numpy as np
import torch
from torch import nn

from seq2seq.config.generation import GenerationConfig, check_generation
from seq2seq.config.schema import TrainConfig
from seq2seq.data.batching import PairBatch, collate_pairs
from seq2seq.data.checks import check_builtin_fits
from seq2seq.data.cleaning import clean_split
from seq2seq.data.columns import SOURCE_IDS, TARGET_IDS
from seq2seq.data.lengths import token_lengths
from seq2seq.data.prepare import PAIR_COLUMNS, clean_role, load_raw_splits, prepare_data
from seq2seq.data.streaming import Window
from seq2seq.data.tokenization import tokenize_splits
from seq2seq.evaluation import get_metric
from seq2seq.generation.limits import count_at_limit, warn_at_limit
from seq2seq.model import EncoderDecoderTransformer, PerformerModel, build_model
from seq2seq.tasks.base import (
    DecodingOptions,
    Predictions,
    PreparedData,
    Task,
    generation_settings,
)
from seq2seq.tasks.seq2seq_evaluation import (
    EvaluationSet,
    Seq2SeqEvaluator,
    decode_sources,
    evaluation_set,
)
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.tokenizer.stored import stored_tokenizers, tokenizer_tensors
from seq2seq.training.loss import LossSums, label_smoothed_cross_entropy
from seq2seq.training.state import BatchStream

log = logging.getLogger("seq2seq.generate")

LOSS_FIGURES = {"loss": False, "ppl": False}
"""The teacher-forced figures every validation computes (lower is better)."""


def length_limits(cfg: TrainConfig) -> tuple[int, int]:
    """Longest source and target in tokens: the data settings, or what model.max_len allows
    (the decoder input is bos + target)."""
    source, target = cfg.data.max_source_len, cfg.data.max_target_len
    return (
        cfg.model.max_len if source is None else source,
        cfg.model.max_len - 1 if target is None else target,
    )


def longest_output(cfg: TrainConfig) -> int:
    """The most tokens an output can have: the decoder reads bos and those tokens, and eos
    is the prediction after the last of them, never an input."""
    return max(1, cfg.model.max_len - 1)


def decoding_settings(cfg: TrainConfig, generation: GenerationConfig) -> GenerationConfig:
    """`generation` checked against the model's limits, with its cap filled in."""
    longest = longest_output(cfg)
    check_generation(generation, longest=longest)
    return generation if generation.max_len is not None else replace(generation, max_len=longest)


class Seq2SeqTask(Task):
    model_kind = "encoder_decoder"
    reads = (
        "data.source",
        "data.target",
        "data.max_source_len",
        "data.max_target_len",
        *generation_settings(
            "strategy",
            "beam_size",
            "nbest",
            "length_penalty",
            "max_len_a",
            "max_len_b",
            "max_len",
            "min_len",
            "temperature",
            "top_k",
            "top_p",
            "seed",
        ),
    )

    def __init__(self, cfg: TrainConfig, tokenizers: tuple[Tokenizer, Tokenizer] | None = None):
        super().__init__(cfg)
        self.tokenizers = tokenizers

    # --- config -------------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: TrainConfig, command_line: Sequence[str]) -> None:
        check_builtin_fits(cfg, PAIR_COLUMNS)
        max_source, max_target = length_limits(cfg)
        for name, value in {
            "data.max_source_len": max_source,
            "data.max_target_len": max_target,
        }.items():
            if value < 1:
                raise ValueError(f"{name}={value} must be a positive integer")
        if max(max_source, max_target + 1) > cfg.model.max_len:
            raise ValueError(
                f"data.max_source_len={max_source} / data.max_target_len={max_target} "
                f"(+1 for bos/eos) exceed model.max_len={cfg.model.max_len}"
            )
        check_generation(cfg.generation, longest=longest_output(cfg))

    @classmethod
    def figures(cls, cfg: TrainConfig) -> dict[str, bool]:
        metrics = {name: get_metric(name).higher_is_better for name in cfg.trainer.metrics}
        return {**LOSS_FIGURES, **metrics}

    # --- data and model -----------------------------------------------------------------

    @property
    def source_tokenizer(self) -> Tokenizer:
        assert self.tokenizers is not None, "prepare() or restore() first"
        return self.tokenizers[0]

    @property
    def target_tokenizer(self) -> Tokenizer:
        assert self.tokenizers is not None, "prepare() or restore() first"
        return self.tokenizers[1]

    def prepare(self) -> PreparedData:
        cfg = self.cfg
        pairs = prepare_data(
            cfg.data,
            cfg.tokenizer,
            length_limits=length_limits(cfg),
            seed=cfg.seed,
            tokenizers=self.tokenizers,
            stream=self.open_stream(PAIR_COLUMNS),
        )
        self.tokenizers = (pairs.source_tokenizer, pairs.target_tokenizer)
        self.data = PreparedData(splits=pairs.splits, reports=pairs.reports)
        return self.data

    def state(self) -> dict[str, Any]:
        return {TOKENIZER_KEY: tokenizer_tensors(self.source_tokenizer, self.target_tokenizer)}

    def save_files(self, run_dir: Path) -> None:
        self.source_tokenizer.save(run_dir / "tokenizer", "source")
        self.target_tokenizer.save(run_dir / "tokenizer", "target")

    def build_model(self) -> PerformerModel:
        return build_model(
            self.cfg.model,
            kind=self.model_kind,
            src_vocab_size=self.source_tokenizer.vocab_size,
            tgt_vocab_size=self.target_tokenizer.vocab_size,
            pad_id=PAD_ID,
            seed=self.cfg.seed,
        )

    def train_batches(self, *, rank: int, world_size: int) -> BatchStream:
        collate = functools.partial(collate_pairs, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
        columns = [SOURCE_IDS, TARGET_IDS]
        if self.stream is not None:
            return self.streamed_batches(
                self._window, columns=columns, collate_fn=collate, rank=rank, world_size=world_size
            )
        sources, targets = token_lengths(self.split("train"))
        return self.token_batches(
            sources,
            target_lengths=targets,
            columns=columns,
            collate_fn=collate,
            rank=rank,
            world_size=world_size,
        )

    def _window(self, rows: datasets.Dataset) -> Window:
        """A window of the streamed train split, tokenized and cleaned as a whole split is."""
        limits = length_limits(self.cfg)
        tokenized = tokenize_splits(
            datasets.DatasetDict({"train": rows}), self.source_tokenizer, self.target_tokenizer
        )["train"]
        cleaned, report = clean_split(
            tokenized,
            max_source_len=limits[0],
            max_target_len=limits[1],
            overlong=self.cfg.data.overlong.value,
        )
        sources, targets = token_lengths(cleaned)
        return Window(cleaned, np.maximum(sources, targets + 1), report)

    def loss(self, model: nn.Module, batch: PairBatch) -> LossSums:
        logits = model(batch.src_tokens, batch.src_mask, batch.tgt_input, batch.tgt_mask)
        return label_smoothed_cross_entropy(
            logits, batch.tgt_output, pad_id=PAD_ID, smoothing=self.cfg.trainer.label_smoothing
        )

    def evaluator(
        self,
        split: str,
        model: nn.Module,
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> Seq2SeqEvaluator:
        cfg = self.cfg
        return Seq2SeqEvaluator(
            model=cast(EncoderDecoderTransformer, model),
            data=evaluation_set(self.split(split), self.target_tokenizer, f"{split} split"),
            target_tokenizer=self.target_tokenizer,
            generation=decoding_settings(cfg, cfg.generation),
            metrics=cfg.trainer.metrics,
            num_samples=cfg.trainer.num_samples,
            max_tokens=cfg.data.max_tokens,
            device=device,
            autocast_dtype=autocast_dtype,
            label_smoothing=cfg.trainer.label_smoothing,
            split=split,
            limit_advice=cfg.generation.limit_advice(longest=longest_output(cfg)),
        )

    # --- prediction ---------------------------------------------------------------------

    @classmethod
    def restore(cls, cfg: TrainConfig, checkpoint: Mapping[str, Any], path: Path) -> Seq2SeqTask:
        return cls(cfg, stored_tokenizers(checkpoint, path))

    def predict(
        self,
        model: nn.Module,
        *,
        lines: Sequence[str] | None,
        split: str | None,
        generation: GenerationConfig,
        options: DecodingOptions,
    ) -> Predictions:
        settings = decoding_settings(self.cfg, generation)
        references = None
        if lines is not None:
            sources = encode_lines(lines, self.source_tokenizer, max_len=self.cfg.model.max_len)
        else:
            assert split is not None
            evaluation = self._split_set(split)
            sources = evaluation.source_ids
            if options.references:
                references = references_rows(evaluation.references)
        nbests = decode_sources(
            cast(EncoderDecoderTransformer, model),
            sources,
            settings,
            max_tokens=options.max_tokens,
            device=options.device,
            autocast_dtype=options.autocast_dtype,
        )
        warn_at_limit(
            count_at_limit(nbests),
            sum(bool(nbest) for nbest in nbests),
            "outputs",
            generation.limit_advice(longest=longest_output(self.cfg)),
        )
        decode = self.target_tokenizer.decode
        rows = None
        if options.nbest:
            rows = [
                f"{index}\t{rank}\t{hypothesis.score:.6f}\t{decode(hypothesis.tokens)}"
                for index, nbest in enumerate(nbests)
                for rank, hypothesis in enumerate(nbest)
            ]
        return Predictions(
            lines=[decode(nbest[0].tokens) if nbest else "" for nbest in nbests],
            nbest=rows,
            references=references,
        )

    def _split_set(self, split: str) -> EvaluationSet:
        """A split of the run's data, tokenized, cleaned and de-duplicated as training did."""
        cfg = self.cfg
        try:
            raw = load_raw_splits(cfg.data, seed=cfg.seed, roles=[split])
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"split={split!r} reads the data the run's config names, from the working "
                f"directory: {error}"
            ) from error
        if split not in raw:
            raise ValueError(
                f"split={split!r}: the run's data has no {split} split (it has {sorted(raw)}); "
                f"check data.splits.{split} and data.data_files.{split} of the run's config"
            )
        tokenized = tokenize_splits(
            datasets.DatasetDict({split: raw[split]}), self.source_tokenizer, self.target_tokenizer
        )
        cleaned, _ = clean_role(
            tokenized[split], split, data=cfg.data, length_limits=length_limits(cfg)
        )
        return evaluation_set(cleaned, self.target_tokenizer, f"{split} split")


def encode_lines(lines: Sequence[str], tokenizer: Tokenizer, *, max_len: int) -> list[list[int]]:
    """Token ids per line; blank lines give [] (decoded as empty output lines).

    A line longer than `max_len` tokens is an error naming its 1-based line number: the
    model has no position for it, and cutting it silently would give a wrong translation.
    """
    encoded = tokenizer.encode_batch(list(lines))
    overlong = [(n, len(ids)) for n, ids in enumerate(encoded, start=1) if len(ids) > max_len]
    if overlong:
        line, length = overlong[0]
        others = f" ({len(overlong) - 1} more lines are too)" if len(overlong) > 1 else ""
        raise ValueError(
            f"input line {line} has {length} source tokens, more than model.max_len={max_len}"
            f"{others}; shorten or split such lines"
        )
    empty = sum(1 for ids in encoded if not ids)
    if empty:
        log.warning("%d empty input line(s) give empty output lines", empty)
    unknown = [
        n for n, ids in enumerate(encoded, start=1) if ids and ids.count(UNK_ID) * 2 >= len(ids)
    ]
    if unknown:
        # Such lines decode to something, but from little more than <unk>: most often the
        # input is not in the format the model was trained on.
        log.warning(
            "%d input line(s) are half or more unknown tokens (first: line %d); is the input in "
            "the format of the training data's sources?",
            len(unknown),
            unknown[0],
        )
    return encoded


def references_rows(references: Sequence[Sequence[str]]) -> list[str]:
    """One line per source, its references separated by TABs (seq2seq-evaluate's format)."""
    for index, alternatives in enumerate(references):
        for reference in alternatives:
            if "\t" in reference or "\n" in reference:
                raise ValueError(
                    f"reference {reference!r} of source {index} holds a TAB or newline, so it "
                    "cannot be written as a line of TAB-separated references"
                )
    return ["\t".join(alternatives) for alternatives in references]
