"""`Task`: what differs between kinds of training, behind one interface.

A task owns the model kind it builds, how it reads and tokenizes its data, its batches, its
loss, its validation figures and its predictions (what seq2seq-generate writes). The trainer
loop, checkpoints, resume, logging, sweeps and DDP only talk to this interface, so a new kind
of training is one module, one config file and one registry entry.

Life of a task in a training run: `check_config` (by the config layer, before anything
else), then `prepare` (data and tokenizers), `build_model`, `train_batches`, `loss` on
every batch, `evaluator` for validation and test, and `state` in every checkpoint. For
seq2seq-generate, `restore` rebuilds it from a checkpoint's `state`, and `predict` turns
input lines (or a split of the run's data) into output lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np
import torch
from torch import nn

from seq2seq.config.generation import GenerationConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.data.batching import LoaderStream, TokenBatchSampler, make_loader
from seq2seq.data.prepare import TrainStream, open_train_stream
from seq2seq.data.streaming import StreamedBatches, Window
from seq2seq.model import ModelKind, PerformerModel
from seq2seq.training.distributed import Distributed
from seq2seq.training.evaluator import Evaluator
from seq2seq.training.loss import LossSums
from seq2seq.training.state import BatchStream


def generation_settings(*keys: str) -> tuple[str, ...]:
    """The `generation` group and those of its keys a task reads, for `Task.reads`."""
    return ("generation", *(f"generation.{key}" for key in keys))


@dataclass
class PreparedData:
    """A task's splits after tokenizing and cleaning, by role, with what cleaning did."""

    splits: datasets.DatasetDict
    reports: dict[str, Any] = field(default_factory=dict)
    """Per role, a dataclass saying what cleaning did, with `total` and `kept` counts of
    examples (metrics.json records it whole; the others are not scored)."""


@dataclass
class Predictions:
    """What `Task.predict` returns, line for line with its inputs."""

    lines: list[str]
    """The prediction of every input (an empty line for an empty input)."""
    nbest: list[str] | None = None
    """`index<TAB>rank<TAB>score<TAB>prediction` rows, when asked for."""
    references: list[str] | None = None
    """A split's references, TAB-separated alternatives per line, when asked for."""


@dataclass(frozen=True)
class DecodingOptions:
    """How `Task.predict` runs: on which device, in which precision, in what batches."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    max_tokens: int
    nbest: bool = False
    """Also return the n-best rows."""
    references: bool = False
    """Also return the references (a split only)."""
    top_k: int = 5
    """classification: the labels per input of the n-best rows."""


class Task(ABC):
    """One kind of training; see the module docstring for its life cycle."""

    model_kind: ClassVar[ModelKind]
    reads: ClassVar[tuple[str, ...]]
    """The task-specific settings it reads (`data.text`, `generation.beam_size`, a whole
    group as `generation`). What another task reads and this one does not is refused when
    typed beside it (`seq2seq.tasks.unread_settings`): it would be silently ignored."""
    scores_answers: ClassVar[bool] = False
    """Whether its evaluation scores metrics at answer positions (`Metric.answers`)."""
    blank_inputs: ClassVar[bool] = False
    """Whether an all-blank `input` to seq2seq-generate means something (a language
    model samples from an empty prompt)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.data: PreparedData | None = None
        """The prepared splits, once `prepare` ran."""
        self.stream: TrainStream | None = None
        """The streamed train split (`data.streaming`), once `prepare` opened it; the
        prepared splits then hold the held-out ones only."""

    def split(self, role: str) -> datasets.Dataset:
        """A prepared split (`train`, `validation` or `test`)."""
        assert self.data is not None, "prepare() first"
        return self.data.splits[role]

    def token_batches(
        self,
        lengths: np.ndarray,
        *,
        target_lengths: np.ndarray | None = None,
        columns: Sequence[str],
        collate_fn: Callable[[list[dict[str, Any]]], Any],
        rank: int,
        world_size: int,
    ) -> LoaderStream:
        """The train split's batches by token budget (`data.max_tokens`, bucketed by
        length): an example costs its `lengths` entry, or with `target_lengths` the longer
        of its source and its target plus one."""
        sampler = TokenBatchSampler(
            lengths,
            # Without targets, a -1 makes the cost the input's length alone.
            np.full_like(lengths, -1) if target_lengths is None else target_lengths,
            max_tokens=self.cfg.data.max_tokens,
            seed=self.cfg.seed,
            rank=rank,
            world_size=world_size,
        )
        loader = make_loader(
            self.split("train"),
            sampler=sampler,
            columns=columns,
            collate_fn=collate_fn,
            num_workers=self.cfg.data.num_workers,
        )
        return LoaderStream(sampler, loader)

    def open_stream(self, fields: Sequence[str]) -> TrainStream | None:
        """The streamed train split when `data.streaming` asks for one (kept in `stream`)."""
        if self.cfg.data.streaming:
            self.stream = open_train_stream(self.cfg.data, seed=self.cfg.seed, fields=fields)
        return self.stream

    def streamed_batches(
        self,
        prepare: Callable[[datasets.Dataset], Window],
        *,
        columns: Sequence[str],
        collate_fn: Callable[[list[dict[str, Any]]], Any],
        rank: int,
        world_size: int,
    ) -> StreamedBatches:
        """The streamed train split's batches: windows of `data.buffer_size` rows made
        into examples by `prepare` (the task's tokenizing and cleaning), bucketed by
        `data.max_tokens`."""
        assert self.stream is not None and self.data is not None, "prepare() first"
        stream = self.stream
        return StreamedBatches(
            stream.rows,
            prepare=lambda rows: prepare(stream.fields(rows)),
            columns=columns,
            collate_fn=collate_fn,
            max_tokens=self.cfg.data.max_tokens,
            buffer_size=self.cfg.data.buffer_size,
            seed=self.cfg.seed,
            distributed=Distributed(rank=rank, world_size=world_size),
            reports=self.data.reports,
            identity=stream.identity,
        )

    # --- config -------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def check_config(cls, cfg: TrainConfig, command_line: Sequence[str]) -> None:
        """The task's own checks of a whole config (the config layer has done the rest).
        `command_line`: the overrides the user typed."""

    @classmethod
    @abstractmethod
    def figures(cls, cfg: TrainConfig) -> dict[str, bool]:
        """The validation figures a run of `cfg` computes (the valid `trainer.monitor`
        values), each with whether higher is better."""

    # --- data and model -----------------------------------------------------------------

    @abstractmethod
    def prepare(self) -> PreparedData:
        """Load, tokenize and clean the splits; a restored task keeps its tokenizers, a new
        one trains them on the train split (or finds them in the cache)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Checkpoint entries (tensors and plain data) that `restore` needs to predict."""

    @abstractmethod
    def save_files(self, run_dir: Path) -> None:
        """Readable copies of what the run learned besides the weights (tokenizers)."""

    @abstractmethod
    def build_model(self) -> PerformerModel:
        """The model, its vocabulary sizes taken from the prepared tokenizers."""

    @abstractmethod
    def train_batches(self, *, rank: int, world_size: int) -> BatchStream:
        """The training split's batches for this rank."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> LossSums:
        """The summed training loss of `batch` (forward pass included)."""

    @abstractmethod
    def evaluator(
        self,
        split: str,
        model: nn.Module,
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> Evaluator:
        """Evaluates `model` on a prepared split (`validation` or `test`)."""

    # --- prediction (seq2seq-generate) --------------------------------------------------

    @classmethod
    @abstractmethod
    def restore(cls, cfg: TrainConfig, checkpoint: Mapping[str, Any], path: Path) -> Task:
        """The task of a trained run, from its checkpoint's `state` (`path` names it in
        errors); its `build_model` then fits the checkpoint's weights."""

    @abstractmethod
    def predict(
        self,
        model: nn.Module,
        *,
        lines: Sequence[str] | None,
        split: str | None,
        generation: GenerationConfig,
        options: DecodingOptions,
    ) -> Predictions:
        """Predictions for the input `lines`, or for a `split` of the run's data prepared
        as training evaluated it; `generation`: the decoding settings (checked here, where
        the model's limits are known)."""
