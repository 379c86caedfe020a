"""`classification`: an encoder classifier from text (or a pair of texts) to a label.

Data: a `text` column, an optional `text_pair` column (`data.text_pair`) and a `label`
column, strings or integers. The label set is the train split's (sorted, numbers in
numeric order) and is stored with the run; a validation or test label that train never had,
or an empty label, is an error naming the label and where it comes from. Inputs are
`bos text [eos text_pair]` (bos is the `cls` pooling's token, eos the pair separator), at
most `model.max_len` tokens. Loss: label-smoothed cross-entropy over the examples.
Validation: loss and `trainer.metrics` on the predicted labels (accuracy, macro-F1), with
per-class precision and recall and a confusion matrix. Prediction: a label per input line
(`text<TAB>text_pair` for pairs), and on request the top-k labels with probabilities.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.config.generation import GenerationConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.data.batching import LoaderStream
from seq2seq.data.checks import check_builtin_fits
from seq2seq.data.cleaning import CleanReport, clean_inputs
from seq2seq.data.columns import LABEL, TEXT, TEXT_PAIR
from seq2seq.data.prepare import load_raw_splits, split_origin, tokenizer_examples
from seq2seq.data.tokenization import build_tokenizer, ids_column, tokenize_columns
from seq2seq.evaluation import get_metric
from seq2seq.model import PerformerModel, build_model
from seq2seq.tasks.base import DecodingOptions, Predictions, PreparedData, Task
from seq2seq.tasks.classification_batches import (
    INPUT_IDS,
    LABEL_ID,
    ClassificationBatch,
    classification_loss,
    collate_inputs,
)
from seq2seq.tasks.classification_evaluation import ClassificationEvaluator, class_log_probabilities
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.tokenizer.stored import stored_tokenizers, tokenizer_tensors
from seq2seq.training.loss import LossSums

log = logging.getLogger("seq2seq.data")

LABELS_KEY = "labels"
"""The checkpoint entry with the label set, in class-index order."""


def _label_order(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order, before other labels in string order."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


class ClassificationTask(Task):
    model_kind = "encoder_classifier"
    reads = ("data.text", "data.text_pair", "data.label")

    def __init__(
        self,
        cfg: TrainConfig,
        tokenizer: Tokenizer | None = None,
        labels: list[str] | None = None,
    ) -> None:
        super().__init__(cfg)
        self.tokenizer = tokenizer
        self.labels = labels
        self.texts: dict[str, list[str]] = {}
        self.references: dict[str, list[str]] = {}

    # --- config -------------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: TrainConfig, command_line: Sequence[str]) -> None:
        check_builtin_fits(cfg, cls.fields(cfg))
        if cfg.data.streaming:
            raise ValueError(
                "data.streaming=true: a classification run reads its label set from the whole "
                "train split, so it keeps the split in memory; set data.streaming=false "
                "(streaming serves task=seq2seq and task=language_modeling)"
            )
        if cfg.data.text_pair is not None and cfg.data.text_pair in (
            cfg.data.text,
            cfg.data.label,
        ):
            raise ValueError(
                f"data.text_pair={cfg.data.text_pair!r} is data.text or data.label too; "
                "name another column, or null for single texts"
            )

    @classmethod
    def fields(cls, cfg: TrainConfig) -> tuple[str, ...]:
        pair = cfg.data.builtin is None and cfg.data.text_pair is not None
        return (TEXT, TEXT_PAIR, LABEL) if pair else (TEXT, LABEL)

    @classmethod
    def figures(cls, cfg: TrainConfig) -> dict[str, bool]:
        metrics = {name: get_metric(name).higher_is_better for name in cfg.trainer.metrics}
        return {"loss": False, **metrics}

    # --- data and model -----------------------------------------------------------------

    def prepare(self) -> PreparedData:
        cfg = self.cfg
        fields = self.fields(cfg)
        raw = load_raw_splits(cfg.data, seed=cfg.seed, fields=fields)
        if self.labels is None:
            self.labels = self._label_set(raw["train"])
        for role, split in raw.items():
            self._check_labels(split, role)
        if self.tokenizer is None:
            self.tokenizer = build_tokenizer(
                tokenizer_examples(raw["train"], cfg.tokenizer),
                [field for field in fields if field != LABEL],
                model_type=cfg.tokenizer.model_type,
                vocab_size=cfg.tokenizer.vocab_size,
                character_coverage=cfg.tokenizer.character_coverage,
                cache_dir=Path(cfg.tokenizer.cache_dir),
            )
        splits, reports = {}, {}
        for role, split in raw.items():
            inputs = self._inputs(split)
            cleaned, report = self._clean(inputs, role)
            splits[role], reports[role] = cleaned, report
            self.texts[role] = self._input_texts(cleaned)
            self.references[role] = list(cleaned[LABEL])
        self.data = PreparedData(splits=datasets.DatasetDict(splits), reports=reports)
        log.info("labels (%d): %s", len(self.labels), self.labels)
        return self.data

    def _label_set(self, train: datasets.Dataset) -> list[str]:
        labels = sorted(set(train[LABEL]) - {None}, key=_label_order)
        if len(labels) < 2:
            raise ValueError(
                f"the train split ({split_origin(self.cfg.data, 'train')}) has "
                f"{len(labels)} distinct label(s) in data.label={self.cfg.data.label!r} "
                f"({labels}); a classifier needs at least two"
            )
        return labels

    def _check_labels(self, split: datasets.Dataset, role: str) -> None:
        assert self.labels is not None
        known = set(self.labels)
        for row, label in enumerate(split[LABEL], start=1):
            if label is None or not label.strip():
                raise ValueError(
                    f"example {row} of the {role} split ({split_origin(self.cfg.data, role)}) "
                    f"has an empty label (data.label={self.cfg.data.label!r}); every example "
                    "needs one"
                )
            if label not in known:
                raise ValueError(
                    f"label {label!r} of the {role} split ({split_origin(self.cfg.data, role)}, "
                    f"example {row}) is not a label of the train split {self.labels}"
                )

    def _inputs(self, split: datasets.Dataset) -> datasets.Dataset:
        """`input_ids` (bos text [eos pair]) and `label_id` columns added to `split`."""
        assert self.tokenizer is not None and self.labels is not None
        texts = [field for field in self.fields(self.cfg) if field != LABEL]
        tokenized = tokenize_columns(
            datasets.DatasetDict({"split": split}), dict.fromkeys(texts, self.tokenizer)
        )["split"]
        index = {label: i for i, label in enumerate(self.labels)}

        def join(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            rows = []
            for i, first in enumerate(batch[ids_column(TEXT)]):
                ids = [BOS_ID, *first] if first else []
                if TEXT_PAIR in texts and ids:
                    ids += [EOS_ID, *batch[ids_column(TEXT_PAIR)][i]]
                rows.append(ids)
            return {INPUT_IDS: rows, LABEL_ID: [index[label] for label in batch[LABEL]]}

        return tokenized.map(join, batched=True, desc="joining inputs")

    def _clean(self, inputs: datasets.Dataset, role: str) -> tuple[datasets.Dataset, CleanReport]:
        """Empty texts are dropped; inputs over model.max_len tokens are dropped or truncated
        (`data.overlong`) in train, truncated in held-out splits, so every one is scored."""
        overlong = "truncate" if role != "train" else self.cfg.data.overlong
        cleaned, report = clean_inputs(
            inputs,
            INPUT_IDS,
            max_len=self.cfg.model.max_len,
            overlong=overlong,  # type: ignore[arg-type]
        )
        log.info("%s split: %s", role, report)
        if role != "train" and (report.truncated or report.dropped_empty):
            log.warning(
                "%s split: %d empty example(s) not scored, %d truncated (%s)",
                role,
                report.dropped_empty,
                report.truncated,
                report.limits,
            )
        if len(cleaned) == 0:
            raise ValueError(
                f"the {role} split has no usable example left ({report}); check "
                f"data.text={self.cfg.data.text!r}"
            )
        return cleaned, report

    def _input_texts(self, split: datasets.Dataset) -> list[str]:
        columns = [split[field] for field in self.fields(self.cfg) if field != LABEL]
        return ["\t".join(parts) for parts in zip(*columns, strict=True)]

    def state(self) -> dict[str, Any]:
        assert self.tokenizer is not None and self.labels is not None
        return {
            TOKENIZER_KEY: tokenizer_tensors(self.tokenizer, self.tokenizer),
            LABELS_KEY: list(self.labels),
        }

    def save_files(self, run_dir: Path) -> None:
        assert self.tokenizer is not None and self.labels is not None
        self.tokenizer.save(run_dir / "tokenizer", "text")
        (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in self.labels))

    def build_model(self) -> PerformerModel:
        assert self.tokenizer is not None and self.labels is not None
        return build_model(
            self.cfg.model,
            kind=self.model_kind,
            src_vocab_size=self.tokenizer.vocab_size,
            tgt_vocab_size=self.tokenizer.vocab_size,
            pad_id=PAD_ID,
            seed=self.cfg.seed,
            num_classes=len(self.labels),
        )

    def train_batches(self, *, rank: int, world_size: int) -> LoaderStream:
        inputs = self.split("train")[INPUT_IDS]
        return self.token_batches(
            np.array([len(ids) for ids in inputs], dtype=np.int64),
            columns=[INPUT_IDS, LABEL_ID],
            collate_fn=functools.partial(collate_inputs, pad_id=PAD_ID),
            rank=rank,
            world_size=world_size,
        )

    def loss(self, model: nn.Module, batch: ClassificationBatch) -> LossSums:
        logits = model(batch.tokens, batch.mask)
        return classification_loss(logits, batch.labels, smoothing=self.cfg.trainer.label_smoothing)

    def evaluator(
        self,
        split: str,
        model: nn.Module,
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> ClassificationEvaluator:
        assert self.labels is not None
        cfg = self.cfg
        return ClassificationEvaluator(
            model=model,
            inputs=[list(ids) for ids in self.split(split)[INPUT_IDS]],
            texts=self.texts[split],
            labels=self.references[split],
            label_names=self.labels,
            metrics=cfg.trainer.metrics,
            num_samples=cfg.trainer.num_samples,
            max_tokens=cfg.data.max_tokens,
            pad_id=PAD_ID,
            device=device,
            autocast_dtype=autocast_dtype,
            label_smoothing=cfg.trainer.label_smoothing,
        )

    # --- prediction ---------------------------------------------------------------------

    @classmethod
    def restore(
        cls, cfg: TrainConfig, checkpoint: Mapping[str, Any], path: Path
    ) -> ClassificationTask:
        labels = checkpoint.get(LABELS_KEY)
        if not isinstance(labels, list) or not labels:
            raise ValueError(f"checkpoint {path} has no label set; it is not a classifier's")
        tokenizer, _ = stored_tokenizers(checkpoint, path)
        return cls(cfg, tokenizer, [str(label) for label in labels])

    def predict(
        self,
        model: nn.Module,
        *,
        lines: Sequence[str] | None,
        split: str | None,
        generation: GenerationConfig,
        options: DecodingOptions,
    ) -> Predictions:
        assert self.labels is not None
        references = None
        if lines is not None:
            rows = self._encode_lines(lines)
        else:
            assert split is not None
            self.prepare()
            rows = [list(ids) for ids in self.split(split)[INPUT_IDS]]
            references = self.references[split] if options.references else None
        real = [i for i, row in enumerate(rows) if row]
        log_probs = class_log_probabilities(
            model,
            [rows[i] for i in real],
            pad_id=PAD_ID,
            max_tokens=options.max_tokens,
            device=options.device,
            autocast_dtype=options.autocast_dtype,
        )
        best = dict(zip(real, log_probs.argmax(-1).tolist(), strict=True))
        predicted = [self.labels[best[i]] if i in best else "" for i in range(len(rows))]
        nbest = self._top_labels(real, log_probs, options.top_k) if options.nbest else None
        return Predictions(lines=predicted, nbest=nbest, references=references)

    def _encode_lines(self, lines: Sequence[str]) -> list[list[int]]:
        """`bos text [eos pair]` per line (`text<TAB>pair` when the run reads pairs); an
        input over model.max_len tokens is an error naming its line."""
        assert self.tokenizer is not None
        pairs = TEXT_PAIR in self.fields(self.cfg)
        rows = []
        for number, line in enumerate(lines, start=1):
            text, _, pair = line.partition("\t") if pairs else (line, "", "")
            ids = self.tokenizer.encode(text)
            if ids and pairs:
                ids += [EOS_ID, *self.tokenizer.encode(pair)]
            row = [BOS_ID, *ids] if ids else []
            if len(row) > self.cfg.model.max_len:
                raise ValueError(
                    f"input line {number} has {len(row)} tokens, more than "
                    f"model.max_len={self.cfg.model.max_len}; shorten or split such lines"
                )
            rows.append(row)
        empty = sum(1 for row in rows if not row)
        if empty:
            log.warning("%d empty input line(s) give empty output lines", empty)
        return rows

    def _top_labels(self, real: list[int], log_probs: Tensor, k: int) -> list[str]:
        assert self.labels is not None
        top = log_probs.exp().topk(min(k, len(self.labels)), dim=-1)
        return [
            f"{index}\t{rank}\t{probability:.6f}\t{self.labels[label]}"
            for index, probabilities, labels in zip(
                real, top.values.tolist(), top.indices.tolist(), strict=True
            )
            for rank, (probability, label) in enumerate(zip(probabilities, labels, strict=True))
        ]
