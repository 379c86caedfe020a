"""Training batches read from a stream (`data.streaming=true`), resumable mid-epoch exactly.

The train split is a Hugging Face `IterableDataset` (`load_dataset(..., streaming=True)`),
sharded per rank with `split_dataset_by_node`. It is read in windows of
`data.buffer_size` examples: each window is prepared by the task as the in-memory path
prepares a whole split (tokenized, cleaned, cut into blocks: the same code), then
batched as `TokenBatchSampler` batches one pool: shuffled by a generator seeded with
(seed, epoch, rank, window), sorted by cost, packed greedily into `data.max_tokens`
budgets, and the batches shuffled. Memory holds two windows (the next one is read and
prepared on a thread while the current one trains), whatever the corpus size; examples
farther apart in the stream than a window are never in one batch.

Position: the stream's state (`IterableDataset.state_dict()`) at the start of the current
window, the window's index and the batches of it already taken. A resumed run loads that
state, reads and prepares that one window again (the same examples give the same
batches) and skips the batches taken: nothing is trained twice, and only one window is
re-read, never the epoch. Each rank's position goes into the checkpoint (like the RNG
states), and what preparing kept, dropped and truncated is counted as the run goes.

Ranks: each rank reads its own part of the stream, so their batch counts differ by a
little. Before every batch the ranks agree that each has one; the first rank that runs
out ends the epoch for all (the others' remaining batches are left, with a warning),
so DDP never waits for a rank that has nothing to give.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import datasets
import numpy as np
from datasets.distributed import split_dataset_by_node

from seq2seq.data.batching import pack_sorted

log = logging.getLogger("seq2seq.data")

REPORT_EVERY = 60.0
"""Seconds between two log lines of the stream's counts (the first window's is logged)."""
DEFAULT_TOKENIZER_EXAMPLES = 100_000
"""Examples from the start of a stream that its tokenizer is trained on when
`tokenizer.train_examples` is null (the in-memory path takes the whole split)."""


class Ranks(Protocol):
    """The ranks reading the stream together (`seq2seq.training.distributed.Distributed`)."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    @property
    def is_main(self) -> bool: ...

    def any(self, flag: bool) -> bool: ...

    def gather(self, obj: Any) -> list[Any]: ...


@dataclass(frozen=True)
class Window:
    """One window of the stream as the task prepared it."""

    examples: datasets.Dataset
    """The training examples, with the columns the task's collation reads."""
    costs: np.ndarray
    """Positions each example takes in a batch (its longer side)."""
    report: Any
    """What preparing kept, dropped and truncated: a task report that adds up (`+`)."""


PrepareWindow = Callable[[list[dict[str, Any]]], Window]
"""A window of raw rows (as the stream yields them) -> the task's prepared examples."""


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """A window is prepared in a blink: `datasets` would draw a bar for each of its steps."""
    if datasets.are_progress_bars_disabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def _count_of(report: Any, name: str) -> int:
    return int(getattr(report, name, 0))


def unreadable(identity: dict[str, Any], where: str, error: Exception) -> ValueError:
    """A stream that failed to read (a broken line), in one line naming the data."""
    data = ", ".join(f"data.{key}={value!r}" for key, value in identity.items() if value)
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(f"the streamed train split ({data}) could not be read at {where}: {cause}")


def first_rows(
    source: datasets.IterableDataset, count: int, *, identity: dict[str, Any]
) -> list[dict[str, Any]]:
    """The first `count` rows of the stream (all of them when it is shorter)."""
    try:
        return list(itertools.islice(iter(source), count))
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as error:
        raise unreadable(identity, f"its first {count} examples", error) from error


class StreamedBatches:
    """The trainer's `BatchStream` over a streamed train split (see the module docstring)."""

    def __init__(
        self,
        source: datasets.IterableDataset,
        *,
        prepare: PrepareWindow,
        columns: Sequence[str],
        collate_fn: Callable[[list[dict[str, Any]]], Any],
        max_tokens: int,
        buffer_size: int,
        seed: int,
        distributed: Ranks,
        reports: dict[str, Any],
        identity: dict[str, Any],
    ) -> None:
        """`reports`: the task's data reports; its `train` entry is kept up to date with
        the counts of every window read so far (all ranks', as of the last checkpoint, on
        rank 0). `identity`: what names the data in the layout (path, files)."""
        self.distributed = distributed
        self.source = split_dataset_by_node(
            source, rank=distributed.rank, world_size=distributed.world_size
        )
        self.prepare = prepare
        self.columns = list(columns)
        self.collate_fn = collate_fn
        self.max_tokens = max_tokens
        self.buffer_size = buffer_size
        self.seed = seed
        self.reports = reports
        self.identity = identity
        self._start = copy.deepcopy(self.source.state_dict())
        self._report: Any = None
        self._saved_report: dict[str, Any] | None = None
        self._position: dict[str, Any] = self._at(0, 0, 0, self._start, 0)
        self._restored: dict[str, Any] | None = None
        self._warned = False
        self._reported = -math.inf

    @staticmethod
    def _at(
        epoch: int, epoch_batches: int, window: int, window_state: Any, in_window: int
    ) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "epoch_batches": epoch_batches,
            "window": window,
            "window_state": window_state,
            "in_window": in_window,
        }

    # --- the trainer's BatchStream -----------------------------------------------------

    def layout(self) -> dict[str, Any]:
        return {
            "streaming": True,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "buffer_size": self.buffer_size,
            "world_size": self.distributed.world_size,
            **self.identity,
        }

    def epoch(self, epoch: int, start: int) -> Iterator[Any]:
        """Epoch `epoch`'s batches from batch `start` on: from the saved position when it
        is this one, else from the epoch's start (skipping `start` batches, with a
        warning: a checkpoint without a stream position re-reads the epoch)."""
        saved, self._restored = self._restored, None
        if saved is not None and (saved["epoch"], saved["epoch_batches"]) == (epoch, start):
            window, state, skip = saved["window"], saved["window_state"], saved["in_window"]
            done = start
        else:
            window, state, skip, done = 0, self._start, start, 0
            if start:
                log.warning(
                    "no stream position for batch %d of epoch %d in the checkpoint: the "
                    "epoch's stream is read again from its start to reach it",
                    start,
                    epoch,
                )
        self.source.load_state_dict(copy.deepcopy(state))
        rows = iter(self.source)
        # The next window is read and prepared on a thread while this one trains (the
        # model's operations release the GIL); windows still come strictly in order.
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-window")
        pending = reader.submit(self._read, rows, epoch, window)
        try:
            while True:
                read = pending.result()
                if read is None:
                    break
                next_state, prepared, batches, examples = read
                pending = reader.submit(self._read, rows, epoch, window + 1)
                if skip < len(batches):  # a window whose batches were all taken is counted
                    self._count(prepared.report, window, epoch, resumed=skip > 0)
                for index in range(skip, len(batches)):
                    if self.distributed.any(False):  # another rank ran out: the epoch ends
                        self._left(epoch, len(batches) - index)
                        return
                    done += 1
                    self._position = self._at(epoch, done, window, state, index + 1)
                    yield self.collate_fn([examples[i] for i in batches[index]])
                skip = max(0, skip - len(batches))
                window, state = window + 1, next_state
        finally:
            # The stream is not touched again before the thread is done with it.
            reader.shutdown(wait=True, cancel_futures=True)
        # Out of rows: the other ranks stop with this one (it takes part in their check).
        self.distributed.any(True)
        self._position = self._at(epoch + 1, 0, 0, self._start, 0)

    def _read(
        self, rows: Iterator[dict[str, Any]], epoch: int, window: int
    ) -> tuple[Any, Window, list[list[int]], list[dict[str, Any]]] | None:
        """The next window of `rows`: the stream's state after it, the prepared window,
        its batches and its examples; None at the end of the stream."""
        try:
            taken = list(itertools.islice(rows, self.buffer_size))
        except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as error:
            raise unreadable(self.identity, f"window {window} of epoch {epoch}", error) from error
        if not taken:
            return None
        next_state = copy.deepcopy(self.source.state_dict())
        with _no_progress_bars():
            prepared = self.prepare(taken)
        batches = self._batches(prepared, epoch, window)
        examples = prepared.examples.select_columns(self.columns).to_list()
        return next_state, prepared, batches, examples

    def _batches(self, prepared: Window, epoch: int, window: int) -> list[list[int]]:
        """The window's batches: a seeded permutation, sorted by cost, packed, shuffled."""
        costs = prepared.costs
        if len(costs) and int(costs.max()) > self.max_tokens:
            index = int(costs.argmax())
            raise ValueError(
                f"data.max_tokens={self.max_tokens} is smaller than one streamed example "
                f"alone ({int(costs[index])} positions, window {window}); raise "
                "data.max_tokens or lower the length limits"
            )
        rng = np.random.default_rng([self.seed, epoch, self.distributed.rank, window])
        order = rng.permutation(len(costs))
        order = order[np.argsort(costs[order], kind="stable")]
        batches = pack_sorted(order.tolist(), costs[order].tolist(), self.max_tokens)
        return [batches[i] for i in rng.permutation(len(batches))]

    def _count(self, report: Any, window: int, epoch: int, *, resumed: bool) -> None:
        """Adds a window's report to the run's counts (a window read again on resume was
        counted before the checkpoint); rank 0 logs the counts so far at most once a
        minute, and warns the first time a window drops or truncates examples."""
        if self._report is None and self._saved_report is not None:
            self._report = type(report)(**self._saved_report)
        if not resumed:
            self._report = report if self._report is None else self._report + report
        self.reports["train"] = self._report
        if not self.distributed.is_main:
            return
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY:
            self._reported = now
            log.info(
                "train stream: epoch %d, window %d read; rank 0 so far: %s",
                epoch,
                window,
                self._report,
            )
        if not self._warned and (report.kept < report.total or _count_of(report, "truncated")):
            self._warned = True
            log.warning(
                "train stream: examples are dropped or truncated (%s); the counts go on "
                "in these lines and metrics.json",
                report,
            )

    def _left(self, epoch: int, count: int) -> None:
        log.warning(
            "epoch %d ends where another rank's part of the stream ended: rank %d leaves "
            "%d batch(es) of its window and the rest of its part unread (streamed ranks "
            "hold unequal parts; the next epoch reads them again)",
            epoch,
            self.distributed.rank,
            count,
        )
        self._position = self._at(epoch + 1, 0, 0, self._start, 0)

    # --- checkpoint state --------------------------------------------------------------

    def state_dict(self) -> list[dict[str, Any]]:
        """Every rank's position and counts, in rank order (every rank calls it); on rank 0
        the counts of all ranks become the `train` report."""
        mine = {
            **self._position,
            "report": None if self._report is None else asdict(self._report),
        }
        states = self.distributed.gather(mine)
        reports = [
            type(self._report)(**state["report"])
            for state in states
            if state["report"] is not None and self._report is not None
        ]
        if reports:
            self.reports["train"] = sum(reports[1:], reports[0])
        return states

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        """This rank's saved position (used when the trainer resumes at it) and counts."""
        if len(states) != self.distributed.world_size:
            return  # another number of ranks: another layout, and the epoch starts again
        mine = states[self.distributed.rank]
        self._restored = mine
        self._saved_report = mine.get("report")
