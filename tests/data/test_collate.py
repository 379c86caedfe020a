"""collate_pairs, PairBatch and the loader from make_dataloader (including resumption with workers)."""

from __future__ import annotations

import itertools

import datasets
import pytest
import torch

from seq2seq.data.batching import (
    PairBatch,
    ResumableDataLoader,
    TokenBatchSampler,
    collate_pairs,
    make_dataloader,
)
from seq2seq.data.lengths import token_lengths

PAD, BOS, EOS = 0, 2, 3


def test_collate_pads_right_and_adds_bos_and_eos() -> None:
    batch = collate_pairs(
        [
            {"source_ids": [5, 6, 7], "target_ids": [8]},
            {"source_ids": [9], "target_ids": [10, 11, 12]},
        ],
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
    )
    assert batch.src_tokens.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.tgt_input.tolist() == [[2, 8, 0, 0], [2, 10, 11, 12]]
    assert batch.tgt_output.tolist() == [[8, 3, 0, 0], [10, 11, 12, 3]]
    assert batch.tgt_mask.tolist() == [[True, True, False, False], [True] * 4]
    assert batch.num_target_tokens == 6 == int(batch.tgt_mask.sum())
    for tensor in (batch.src_tokens, batch.tgt_input, batch.tgt_output):
        assert tensor.dtype == torch.long
    assert batch.src_mask.dtype == batch.tgt_mask.dtype == torch.bool
    assert batch.batch_size == 2


def test_an_empty_target_still_has_bos_and_eos() -> None:
    batch = collate_pairs(
        [{"source_ids": [5], "target_ids": []}], pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    assert batch.tgt_input.tolist() == [[BOS]]
    assert batch.tgt_output.tolist() == [[EOS]]


def test_an_empty_source_is_refused() -> None:
    with pytest.raises(ValueError, match=r"example 1 .* empty source.*clean_split"):
        collate_pairs(
            [{"source_ids": [5], "target_ids": [6]}, {"source_ids": [], "target_ids": [6]}],
            pad_id=PAD,
            bos_id=BOS,
            eos_id=EOS,
        )


def test_to_moves_every_tensor() -> None:
    batch = collate_pairs(
        [{"source_ids": [5], "target_ids": [6]}], pad_id=PAD, bos_id=BOS, eos_id=EOS
    )
    moved = batch.to(torch.device("meta"))
    assert isinstance(moved, PairBatch)
    assert all(
        t.device.type == "meta"
        for t in (
            moved.src_tokens,
            moved.src_mask,
            moved.tgt_input,
            moved.tgt_output,
            moved.tgt_mask,
        )
    )
    assert moved.num_target_tokens == batch.num_target_tokens


def _tokenized(n: int = 120) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "source": [str(i) for i in range(n)],
            "source_ids": [[4 + i % 7] * (1 + i % 9) for i in range(n)],
            "target_ids": [[100 + i] * (i % 5) for i in range(n)],
        }
    )


def _loader(ds: datasets.Dataset, *, num_workers: int = 0) -> ResumableDataLoader:
    sampler = TokenBatchSampler(*token_lengths(ds), max_tokens=40, seed=0)
    return make_dataloader(
        ds, sampler=sampler, pad_id=PAD, bos_id=BOS, eos_id=EOS, num_workers=num_workers
    )


def _ids(batches: list[PairBatch]) -> list[list[int]]:
    """Example ids of each batch: target_ids are 100 + index; an empty target has none."""
    return [sorted({v - 100 for v in b.tgt_output.flatten().tolist() if v >= 100}) for b in batches]


def test_the_loader_yields_batches_of_every_example() -> None:
    ds = _tokenized()
    loader = _loader(ds)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert sum(b.batch_size for b in batches) == len(ds)
    assert sum(b.num_target_tokens for b in batches) == sum(i % 5 + 1 for i in range(len(ds)))


def test_the_loader_refuses_a_sampler_of_another_split() -> None:
    sampler = TokenBatchSampler([1, 2], [1, 2], max_tokens=40)
    with pytest.raises(ValueError, match=r"built for 2 examples but the split has 120"):
        make_dataloader(_tokenized(), sampler=sampler, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def test_the_loader_state_counts_received_batches_despite_worker_prefetch() -> None:
    ds = _tokenized()
    unbroken = list(_loader(ds))

    first = _loader(ds, num_workers=2)
    received = list(itertools.islice(iter(first), 5))
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (0, 5)
    # Iterating the same loader again continues where the loop stopped, not after the
    # batches that the workers had prefetched.
    received += list(itertools.islice(iter(first), 3))

    resumed = _loader(ds)
    resumed.load_state_dict(first.state_dict())
    received += list(resumed)
    assert _ids(received) == _ids(unbroken)
    assert resumed.state_dict()["epoch"] == 1
