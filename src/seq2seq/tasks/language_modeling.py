"""`language_modeling`: a decoder-only language model of a text column.

Data: a `text` column of documents (a text file's lines, a JSON field, a built-in corpus),
tokenized by one tokenizer (`tokenizer=byte` needs no training), cut into blocks of
`data.block_size` tokens (language_modeling_data.py). Loss: label-smoothed cross-entropy
over every predicted token. Validation and test: loss, perplexity and bits per UTF-8 byte
over the whole split; `trainer.metrics` that are rules (`dyck`) on
`trainer.sampled_documents` documents sampled from an empty prompt, and those with an answer
rule (`mqar`) on the argmax prediction at each answer of the split's documents, teacher
forced. Prediction: the continuation of every input line (a prompt; an empty line samples a
document), by greedy search, beam search or sampling over the incremental state; a
continuation's newlines and backslashes are escaped (`one_line`), so each stays on its
prompt's line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from seq2seq.config.data import Packing, TokenizerModel
from seq2seq.config.generation import GenerationConfig, check_generation
from seq2seq.config.schema import TrainConfig
from seq2seq.data.checks import check_builtin_fits
from seq2seq.data.columns import TEXT
from seq2seq.data.prepare import HELD_OUT, load_raw_splits, split_origin, tokenizer_examples
from seq2seq.data.streaming import Window
from seq2seq.data.tokenization import build_tokenizer, ids_column, tokenize_columns
from seq2seq.evaluation import get_metric
from seq2seq.generation.limits import count_at_limit, warn_at_limit
from seq2seq.model import PerformerModel, build_model
from seq2seq.tasks.base import DecodingOptions, Predictions, PreparedData, Task, generation_settings
from seq2seq.tasks.language_modeling_batches import LanguageModelBatch, collate_blocks
from seq2seq.tasks.language_modeling_data import BLOCK, BYTES, BlockReport, make_blocks
from seq2seq.tasks.language_modeling_evaluation import (
    LanguageModelEvaluator,
    continuation_limit_advice,
    continue_prompts,
    one_line,
)
from seq2seq.tokenizer import EOS_ID, PAD_ID, Tokenizer
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.tokenizer.stored import stored_tokenizers, tokenizer_tensors
from seq2seq.training.loss import LossSums, label_smoothed_cross_entropy
from seq2seq.training.state import BatchStream

log = logging.getLogger("seq2seq.data")

FIELDS = (TEXT,)
BLOCK_FEATURE = datasets.Sequence(datasets.Value("int32"))
LOSS_FIGURES = {"loss": False, "ppl": False, "bpb": False}


def _check_answer_metric(cfg: TrainConfig, name: str) -> None:
    """An answer metric (`mqar`) reads each document's answers at their bytes, one block a
    document: the byte tokenizer and per-document blocks."""
    metrics = list(cfg.trainer.metrics)
    if cfg.tokenizer.model_type != TokenizerModel.byte:
        raise ValueError(
            f"trainer.metrics={metrics}: {name!r} scores the prediction at each answer's "
            "byte, one token per byte, which needs tokenizer.model_type=byte; got "
            f"tokenizer.model_type={cfg.tokenizer.model_type.value!r}: set tokenizer=byte"
        )
    if cfg.data.packing != Packing.document:
        raise ValueError(
            f"trainer.metrics={metrics}: {name!r} scores each document's answers in a "
            "context of that document alone, which needs data.packing=document (one block "
            f"per document); got data.packing={cfg.data.packing.value!r}"
        )


class LanguageModelingTask(Task):
    model_kind = "decoder_lm"
    scores_answers = True
    reads = (
        "data.text",
        "data.block_size",
        "data.packing",
        *generation_settings(
            "strategy",
            "beam_size",
            "nbest",
            "length_penalty",
            "min_len",
            "max_new_tokens",
            "temperature",
            "top_k",
            "top_p",
            "seed",
        ),
    )
    blank_inputs = True

    def __init__(self, cfg: TrainConfig, tokenizer: Tokenizer | None = None) -> None:
        super().__init__(cfg)
        self.tokenizer = tokenizer
        self.shares: dict[str, list[float]] = {}
        self.answers: dict[str, dict[str, list[list[int]]]] = {}
        """Per held-out role, per answer metric (`mqar`): each block's answer positions
        among its targets."""

    # --- config -------------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: TrainConfig, command_line: Sequence[str]) -> None:
        check_builtin_fits(cfg, FIELDS)
        if cfg.data.block_size < 1:
            raise ValueError(f"data.block_size={cfg.data.block_size} must be a positive integer")
        if cfg.data.block_size > cfg.model.max_len:
            raise ValueError(
                f"data.block_size={cfg.data.block_size} is longer than the positions cover "
                f"(model.max_len={cfg.model.max_len}); lower data.block_size or raise "
                "model.max_len"
            )
        if cfg.data.max_tokens < cfg.data.block_size:
            raise ValueError(
                f"data.max_tokens={cfg.data.max_tokens} cannot hold one block of "
                f"data.block_size={cfg.data.block_size} tokens; raise data.max_tokens"
            )
        for name in cfg.trainer.metrics:
            metric = get_metric(name)
            if metric.answers is not None:
                _check_answer_metric(cfg, name)
            elif metric.needs_references:
                raise ValueError(
                    f"trainer.metrics={list(cfg.trainer.metrics)}: {name!r} compares outputs "
                    "with references, which a language model's samples have none of; use "
                    "rules such as 'dyck', answer metrics such as 'mqar', or no metrics (loss, "
                    "ppl and bpb are always there)"
                )
        if cfg.trainer.sampled_documents < 0:
            raise ValueError(
                f"trainer.sampled_documents={cfg.trainer.sampled_documents} must be >= 0"
            )
        check_generation(cfg.generation, longest=cfg.model.max_len)

    @classmethod
    def figures(cls, cfg: TrainConfig) -> dict[str, bool]:
        metrics = {name: get_metric(name).higher_is_better for name in cfg.trainer.metrics}
        return {**LOSS_FIGURES, **metrics}

    # --- data and model -----------------------------------------------------------------

    def prepare(self) -> PreparedData:
        cfg = self.cfg
        stream = self.open_stream(FIELDS)
        roles = None if stream is None else HELD_OUT
        raw = load_raw_splits(cfg.data, seed=cfg.seed, fields=FIELDS, roles=roles)
        if self.tokenizer is None:
            train = (
                tokenizer_examples(raw["train"], cfg.tokenizer)
                if stream is None
                else stream.sample(cfg.tokenizer)
            )
            self.tokenizer = build_tokenizer(
                train,
                [TEXT],
                model_type=cfg.tokenizer.model_type,
                vocab_size=cfg.tokenizer.vocab_size,
                character_coverage=cfg.tokenizer.character_coverage,
                cache_dir=Path(cfg.tokenizer.cache_dir),
            )
        tokenized = tokenize_columns(raw, {TEXT: self.tokenizer})
        splits, reports = {}, {}
        for role, split in tokenized.items():
            splits[role], reports[role] = self._blocks(split, role)
        self.data = PreparedData(splits=datasets.DatasetDict(splits), reports=reports)
        return self.data

    def _make_blocks(
        self, split: datasets.Dataset, role: str
    ) -> tuple[list[list[int]], list[float], BlockReport, list[list[int]], list[str]]:
        """Blocks of a tokenized split, their byte shares, the report, and the documents
        (ids and texts) they were cut from."""
        data = self.cfg.data
        documents = [list(ids) for ids in split[ids_column(TEXT)]]
        texts = [text or "" for text in split[TEXT]]
        blocks, shares, report = make_blocks(
            documents,
            texts,
            block_size=data.block_size,
            eos_id=EOS_ID,
            packed=data.packing == Packing.packed,
            complete_only=role == "train",
        )
        return blocks, shares, report, documents, texts

    def _window(self, rows: datasets.Dataset) -> Window:
        """A window of the streamed train split, cut into blocks as a whole split is (a
        packed window's last incomplete block is dropped and counted)."""
        assert self.tokenizer is not None
        tokenized = tokenize_columns(datasets.DatasetDict({"train": rows}), {TEXT: self.tokenizer})
        blocks, _, report, _, _ = self._make_blocks(tokenized["train"], "train")
        examples = datasets.Dataset.from_dict(
            {BLOCK: blocks}, features=datasets.Features({BLOCK: BLOCK_FEATURE})
        )
        return Window(examples, np.array([len(b) - 1 for b in blocks], dtype=np.int64), report)

    def _blocks(self, split: datasets.Dataset, role: str) -> tuple[datasets.Dataset, BlockReport]:
        data = self.cfg.data
        blocks, shares, report, documents, texts = self._make_blocks(split, role)
        log.info("%s split: %s", role, report)
        if report.dropped_empty or report.truncated or report.dropped_tokens:
            log.warning(
                "%s split: %d empty document(s) dropped, %d document(s) truncated to "
                "data.block_size=%d, %d token(s) of an incomplete last block dropped",
                role,
                report.dropped_empty,
                report.truncated,
                data.block_size,
                report.dropped_tokens,
            )
        if not blocks:
            complete = "complete " if role == "train" and data.packing == Packing.packed else ""
            raise ValueError(
                f"the {role} split ({split_origin(data, role)}) has no {complete}block: "
                f"{report.kept} non-empty documents, {report.tokens + report.dropped_tokens} "
                f"tokens, data.block_size={data.block_size}; lower data.block_size or give "
                "more text"
            )
        self.shares[role] = shares
        if role != "train":
            # Per-document blocks (which answer metrics need): one per non-empty document.
            kept = [text for ids, text in zip(documents, texts, strict=True) if ids]
            self.answers[role] = self._answer_positions(kept, blocks, role)
        dataset = datasets.Dataset.from_dict(
            {BLOCK: blocks, BYTES: shares},
            features=datasets.Features({BLOCK: BLOCK_FEATURE, BYTES: datasets.Value("float64")}),
        )
        return dataset, report

    def _answer_positions(
        self, texts: list[str], blocks: list[list[int]], role: str
    ) -> dict[str, list[list[int]]]:
        """Per answer metric of `trainer.metrics`, the positions of each block's answers
        among its targets (`texts`: the blocks' documents, one each). A document's answer at
        character c is its byte b (tokenizer=byte), its block's token b + 1 after the eos
        that opens it, which target position b predicts."""
        result = {}
        for name in self.cfg.trainer.metrics:
            rule = get_metric(name).answers
            if rule is None:
                continue
            positions = []
            for index, (text, block) in enumerate(zip(texts, blocks, strict=True)):
                try:
                    offsets = rule(text)
                except ValueError as error:
                    raise ValueError(
                        f"trainer.metrics={list(self.cfg.trainer.metrics)}: {name!r} finds no "
                        f"answers in document {index} of the {role} split "
                        f"({split_origin(self.cfg.data, role)}): {error}"
                    ) from None
                targets = [len(text[:offset].encode("utf-8")) for offset in offsets]
                last = max(targets, default=-1)
                if last >= len(block) - 1:
                    raise ValueError(
                        f"document {index} of the {role} split is cut before its last answer "
                        f"(byte {last}) by data.block_size={self.cfg.data.block_size}; raise "
                        f"data.block_size to at least {last + 1} (and model.max_len with it)"
                    )
                positions.append(targets)
            result[name] = positions
        return result

    def state(self) -> dict[str, Any]:
        assert self.tokenizer is not None
        return {TOKENIZER_KEY: tokenizer_tensors(self.tokenizer, self.tokenizer)}

    def save_files(self, run_dir: Path) -> None:
        assert self.tokenizer is not None
        self.tokenizer.save(run_dir / "tokenizer", "text")

    def build_model(self) -> PerformerModel:
        assert self.tokenizer is not None
        return build_model(
            self.cfg.model,
            kind=self.model_kind,
            src_vocab_size=self.tokenizer.vocab_size,
            tgt_vocab_size=self.tokenizer.vocab_size,
            pad_id=PAD_ID,
            seed=self.cfg.seed,
        )

    def train_batches(self, *, rank: int, world_size: int) -> BatchStream:
        if self.stream is not None:
            return self.streamed_batches(
                self._window,
                columns=[BLOCK],
                collate_fn=collate_blocks,
                rank=rank,
                world_size=world_size,
            )
        blocks = self.split("train")[BLOCK]
        return self.token_batches(
            # A block of B + 1 tokens reads B of them (its targets are them shifted).
            np.array([len(block) - 1 for block in blocks], dtype=np.int64),
            columns=[BLOCK],
            collate_fn=collate_blocks,
            rank=rank,
            world_size=world_size,
        )

    def loss(self, model: nn.Module, batch: LanguageModelBatch) -> LossSums:
        return label_smoothed_cross_entropy(
            model(batch.tokens, None),  # see LanguageModelBatch
            batch.targets,
            pad_id=PAD_ID,
            smoothing=self.cfg.trainer.label_smoothing,
        )

    def evaluator(
        self,
        split: str,
        model: nn.Module,
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> LanguageModelEvaluator:
        assert self.tokenizer is not None
        cfg = self.cfg
        return LanguageModelEvaluator(
            model=model,
            blocks=[list(block) for block in self.split(split)[BLOCK]],
            shares=self.shares[split],
            tokenizer=self.tokenizer,
            generation=cfg.generation,
            metrics=cfg.trainer.metrics,
            answers=self.answers[split],
            sampled_documents=cfg.trainer.sampled_documents,
            num_samples=cfg.trainer.num_samples,
            max_len=cfg.model.max_len,
            max_tokens=cfg.data.max_tokens,
            device=device,
            autocast_dtype=autocast_dtype,
            label_smoothing=cfg.trainer.label_smoothing,
            split=split,
        )

    # --- prediction ---------------------------------------------------------------------

    @classmethod
    def restore(
        cls, cfg: TrainConfig, checkpoint: Mapping[str, Any], path: Path
    ) -> LanguageModelingTask:
        tokenizer, _ = stored_tokenizers(checkpoint, path)
        return cls(cfg, tokenizer)

    def predict(
        self,
        model: nn.Module,
        *,
        lines: Sequence[str] | None,
        split: str | None,
        generation: GenerationConfig,
        options: DecodingOptions,
    ) -> Predictions:
        assert self.tokenizer is not None
        if lines is None:
            raise ValueError(
                f"split={split!r}: a language model continues prompts; give input= (one prompt "
                "per line; an empty line samples a document), or score a split with "
                "seq2seq-evaluate --checkpoint"
            )
        check_generation(generation, longest=self.cfg.model.max_len)
        prompts = [[EOS_ID, *self.tokenizer.encode(line)] for line in lines]
        nbests = continue_prompts(
            model,
            prompts,
            replace(generation, max_len=None),
            max_len=self.cfg.model.max_len,
            max_tokens=options.max_tokens,
            device=options.device,
            autocast_dtype=options.autocast_dtype,
        )

        warn_at_limit(
            count_at_limit(nbests),
            len(nbests),
            "continuations",
            continuation_limit_advice(generation, self.cfg.model.max_len),
        )

        def decode(tokens: list[int]) -> str:
            assert self.tokenizer is not None
            return one_line(self.tokenizer.decode(tokens))

        rows = None
        if options.nbest:
            rows = [
                f"{index}\t{rank}\t{hypothesis.score:.6f}\t{decode(hypothesis.tokens)}"
                for index, nbest in enumerate(nbests)
                for rank, hypothesis in enumerate(nbest)
            ]
        return Predictions(lines=[decode(nbest[0].tokens) for nbest in nbests], nbest=rows)
