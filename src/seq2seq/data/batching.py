"""Token-budget batches with length bucketing, their collation into tensors, and the loader.

`TokenBatchSampler` decides which examples go together; `collate_pairs` pads them into a
`PairBatch`; `make_dataloader` joins the two into a `torch.utils.data.DataLoader` whose
`state_dict` counts the batches the training loop has received (not those prefetched).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from seq2seq.data.columns import SOURCE_IDS, TARGET_IDS
from seq2seq.data.lengths import require_token_columns

Remainder = Literal["pad", "drop"]
REMAINDER_CHOICES: tuple[str, ...] = get_args(Remainder)


def pack_sorted(indices: Sequence[int], costs: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Greedy batches over `indices`, given in ascending order of `costs`: a batch grows
    while its size times its largest (that is, last) cost stays within `max_tokens`."""
    batches: list[list[int]] = []
    batch: list[int] = []
    for index, cost in zip(indices, costs, strict=True):
        if batch and (len(batch) + 1) * cost > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches


def length_sorted_chunks(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into chunks whose padded size fits `max_tokens`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return pack_sorted(order, [lengths[i] for i in order], max_tokens)


class TokenBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices whose padded size fits in `max_tokens`.

    An example costs `max(source_len, target_len + 1)` positions (the decoder sees
    bos + target, or target + eos); a batch costs its largest example's cost times its
    size, an upper bound on both padded tensors, and never more than `max_tokens`.

    Bucketing: each epoch, a permutation drawn from `(seed, epoch)` is cut into pools
    of `pool_size` examples; each pool is sorted by cost and packed greedily, and the
    batches of all pools are shuffled together. With `shuffle=False` the whole split
    is one pool in index order and batches come shortest first.

    Sharding: every rank computes the same batches and takes every `world_size`-th,
    starting at `rank`. When the count does not divide, `remainder="pad"` repeats the
    epoch's first batches and `"drop"` drops its last ones, so that all ranks get
    `len(self)` batches.

    Position: the sampler counts the batches it has handed out in the current epoch;
    a new iteration continues from there, and an exhausted epoch moves on to the next.
    `set_epoch(e)` with a different epoch starts that epoch from its first batch.
    `state_dict` / `load_state_dict` save and restore the epoch and position. A
    DataLoader with workers draws batches ahead of the training loop; use the state of
    the loader from `make_dataloader`, which counts what the loop received.
    """

    def __init__(
        self,
        source_lengths: Sequence[int] | np.ndarray,
        target_lengths: Sequence[int] | np.ndarray,
        *,
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pool_size: int = 8192,
        remainder: Remainder = "pad",
    ) -> None:
        source = np.asarray(source_lengths, dtype=np.int64)
        target = np.asarray(target_lengths, dtype=np.int64)
        if source.shape != target.shape or source.ndim != 1:
            raise ValueError(
                f"source_lengths {source.shape} and target_lengths {target.shape} must be "
                "1-D and of the same length"
            )
        if max_tokens < 1:
            raise ValueError(f"data.max_tokens={max_tokens} must be at least 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in 0..world_size-1 (world_size={world_size})")
        if pool_size < 1:
            raise ValueError(f"data.pool_size={pool_size} must be at least 1")
        if remainder not in REMAINDER_CHOICES:
            raise ValueError(f"remainder={remainder!r}; choose one of {list(REMAINDER_CHOICES)}")
        self._cost = np.maximum(source, target + 1)
        if len(self._cost) and self._cost.max() > max_tokens:
            index = int(self._cost.argmax())
            what = (
                f"source {source[index]}, target {target[index]} + 1"
                if target[index] >= 0
                else f"{source[index]} tokens"
            )
            raise ValueError(
                f"data.max_tokens={max_tokens} is smaller than example {index} alone "
                f"({self._cost[index]} positions: {what}); raise data.max_tokens, or lower "
                "the length limits (data.max_source_len / data.max_target_len, model.max_len) "
                "so that long examples are dropped or truncated"
            )
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pool_size = pool_size
        self.remainder = remainder
        self._epoch = 0
        self._position = 0
        # Counts outside changes of position (set_epoch, load_state_dict), so that a loader
        # rewinding past its prefetch can tell whether someone else moved the sampler.
        self._moves = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    @property
    def num_examples(self) -> int:
        return len(self._cost)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch handed out so far, on this rank."""
        return self._position

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        return pack_sorted(order.tolist(), self._cost[order].tolist(), self.max_tokens)

    def _global_batches(self, epoch: int) -> list[list[int]]:
        if not self.shuffle:
            return self._pack(np.argsort(self._cost, kind="stable"))
        rng = np.random.default_rng([self.seed, epoch])
        permutation = rng.permutation(self.num_examples)
        batches: list[list[int]] = []
        for start in range(0, self.num_examples, self.pool_size):
            pool = permutation[start : start + self.pool_size]
            batches += self._pack(pool[np.argsort(self._cost[pool], kind="stable")])
        return [batches[i] for i in rng.permutation(len(batches))]

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        batches = self._global_batches(epoch)
        total = len(batches)
        if self.remainder == "drop":
            batches = batches[: total // self.world_size * self.world_size]
        elif total:
            padded = math.ceil(total / self.world_size) * self.world_size
            batches = batches + [batches[i % total] for i in range(padded - total)]
        mine = batches[self.rank :: self.world_size]
        self._cached = (epoch, mine)
        return mine

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank; may vary by epoch)."""
        return len(self._rank_batches(self._epoch))

    def begin(self) -> tuple[int, int]:
        """Moves past an exhausted epoch; returns the `(epoch, position)` iteration starts at."""
        if self._position >= len(self):
            self._epoch += 1
            self._position = 0
        return self._epoch, self._position

    def __iter__(self) -> Iterator[list[int]]:
        self.begin()
        batches = self._rank_batches(self._epoch)
        while self._position < len(batches):
            self._position += 1
            yield batches[self._position - 1]
        self._epoch += 1
        self._position = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order to use; a different epoch starts from its beginning."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._position = 0
            self._moves += 1

    def layout(self) -> dict[str, Any]:
        """What must match for a saved position to mean the same batches."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "max_tokens": self.max_tokens,
            "world_size": self.world_size,
            "num_examples": self.num_examples,
            "pool_size": self.pool_size,
            "remainder": self.remainder,
            # Same count, other lengths (edited data, other length limits): other batches.
            "lengths": hashlib.sha256(self._cost.astype(np.int64).tobytes()).hexdigest()[:16],
        }

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "position": self._position, **self.layout()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues at `state`'s next unseen batch; the batch layout must be the same."""
        for key, value in self.layout().items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"cannot resume the batch order: the checkpoint has {key}={state[key]!r} "
                    f"but this run has {key}={value!r}"
                )
        self._epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._moves += 1


@dataclass
class PairBatch:
    """A padded batch; `True` in a mask marks a real token. Padding is on the right.

    src_tokens: (B, S) long; src_mask: (B, S) bool.
    tgt_input: (B, T) long, bos + target; tgt_output: (B, T) long, target + eos;
    tgt_mask: (B, T) bool, shared by both. `num_target_tokens` counts the real
    positions of `tgt_output` (eos included), the loss's normalizer.
    """

    src_tokens: torch.Tensor
    src_mask: torch.Tensor
    tgt_input: torch.Tensor
    tgt_output: torch.Tensor
    tgt_mask: torch.Tensor
    num_target_tokens: int

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> PairBatch:
        return PairBatch(
            src_tokens=fn(self.src_tokens),
            src_mask=fn(self.src_mask),
            tgt_input=fn(self.tgt_input),
            tgt_output=fn(self.tgt_output),
            tgt_mask=fn(self.tgt_mask),
            num_target_tokens=self.num_target_tokens,
        )

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> PairBatch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> PairBatch:
        """Lets `DataLoader(pin_memory=True)` pin a `PairBatch`."""
        return self._map(lambda t: t.pin_memory())

    @property
    def batch_size(self) -> int:
        return int(self.src_tokens.shape[0])

    @property
    def num_targets(self) -> int:
        """What the loss is summed over: the target tokens."""
        return self.num_target_tokens

    @property
    def num_tokens(self) -> int:
        """Throughput counts the target tokens, as fairseq's words per second does."""
        return self.num_target_tokens


def _padded(rows: list[list[int]], *, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rows: B lists of ids -> (tokens (B, L) long, mask (B, L) bool), L the longest row."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max())
    tokens = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return tokens, mask


def collate_pairs(
    examples: list[dict[str, Any]], *, pad_id: int, bos_id: int, eos_id: int
) -> PairBatch:
    """Pads examples with `source_ids` and `target_ids` (no bos/eos) into a `PairBatch`."""
    if not examples:
        raise ValueError("collate_pairs got no examples")
    sources = [list(e[SOURCE_IDS]) for e in examples]
    targets = [list(e[TARGET_IDS]) for e in examples]
    for i, source in enumerate(sources):
        if not source:
            raise ValueError(
                f"example {i} of the batch has an empty source; drop empty examples with "
                "clean_split before batching"
            )
    src_tokens, src_mask = _padded(sources, pad_id=pad_id)
    tgt_input, tgt_mask = _padded([[bos_id, *t] for t in targets], pad_id=pad_id)
    tgt_output, _ = _padded([[*t, eos_id] for t in targets], pad_id=pad_id)
    return PairBatch(
        src_tokens=src_tokens,
        src_mask=src_mask,
        tgt_input=tgt_input,
        tgt_output=tgt_output,
        tgt_mask=tgt_mask,
        num_target_tokens=sum(len(t) + 1 for t in targets),
    )


class ResumableDataLoader(DataLoader[PairBatch]):
    """A DataLoader over a `TokenBatchSampler` whose state counts the batches received.

    Workers prefetch, so the sampler runs ahead of the loop. This loader remembers the
    `(epoch, position)` of the last batch it gave out; `state_dict` reports that, and a
    new iteration after an interrupted one rewinds the sampler to it (unless the sampler
    was moved since, by `set_epoch` or `load_state_dict`).
    """

    def __init__(
        self, dataset: datasets.Dataset, *, sampler: TokenBatchSampler, **kwargs: Any
    ) -> None:
        super().__init__(dataset, batch_sampler=sampler, **kwargs)
        self._token_sampler = sampler
        self._received: tuple[int, int] | None = None
        self._moves_seen = sampler._moves

    def __iter__(self) -> Iterator[PairBatch]:  # type: ignore[override]
        sampler = self._token_sampler
        if self._received is not None and sampler._moves == self._moves_seen:
            sampler._epoch, sampler._position = self._received
        epoch, position = sampler.begin()
        self._received = (epoch, position)
        self._moves_seen = sampler._moves
        for batch in super().__iter__():
            position += 1
            self._received = (epoch, position)
            yield batch
        self._received = (epoch + 1, 0)

    def set_epoch(self, epoch: int) -> None:
        self._token_sampler.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        state = self._token_sampler.state_dict()
        if self._received is not None and self._token_sampler._moves == self._moves_seen:
            state["epoch"], state["position"] = self._received
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._token_sampler.load_state_dict(state)


class LoaderStream:
    """A training split's batches by epoch, from a resumable position: a
    `TokenBatchSampler` and the loader over it (the trainer's `BatchStream`)."""

    def __init__(self, sampler: TokenBatchSampler, loader: DataLoader[Any]) -> None:
        self.sampler = sampler
        self.loader = loader

    def epoch(self, epoch: int, start: int) -> Iterator[Any]:
        """Epoch `epoch`'s batches from index `start` on (none when it has no more)."""
        self.sampler.load_state_dict({"epoch": epoch, "position": start})
        if start < len(self.sampler):
            yield from self.loader

    def layout(self) -> dict[str, Any]:
        return self.sampler.layout()

    def state_dict(self) -> None:
        """The trainer's (epoch, batch) counts are the whole position of an in-memory split."""
        return None

    def load_state_dict(self, state: Any) -> None:
        """Nothing to restore (see `state_dict`)."""


def make_dataloader(
    ds: datasets.Dataset,
    *,
    sampler: TokenBatchSampler,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    num_workers: int = 0,
) -> ResumableDataLoader:
    """A DataLoader of `PairBatch`es over the tokenized split `ds`, in `sampler`'s order."""
    require_token_columns(ds)
    return make_loader(
        ds,
        sampler=sampler,
        columns=[SOURCE_IDS, TARGET_IDS],
        collate_fn=functools.partial(collate_pairs, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id),
        num_workers=num_workers,
    )


def make_loader(
    ds: datasets.Dataset,
    *,
    sampler: TokenBatchSampler,
    columns: Sequence[str],
    collate_fn: Callable[[list[dict[str, Any]]], Any],
    num_workers: int = 0,
) -> ResumableDataLoader:
    """A DataLoader over the `columns` of `ds` in `sampler`'s order, batches made by
    `collate_fn` (a task's collation)."""
    if sampler.num_examples != len(ds):
        raise ValueError(
            f"the sampler was built for {sampler.num_examples} examples but the split has "
            f"{len(ds)}; build it from this split's lengths (after cleaning)"
        )
    # Only the columns the batches need, as Python lists: the text would be read for nothing.
    rows = ds.select_columns(list(columns)).with_format(None)
    return ResumableDataLoader(
        rows,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        # Starting an iterator draws a seed from this generator; with the global one, a
        # resumed run (which starts one mid-epoch) would shift every later dropout mask.
        generator=torch.Generator().manual_seed(0),
    )
