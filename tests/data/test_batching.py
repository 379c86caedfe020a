"""TokenBatchSampler: token budget, coverage, sharding, determinism and resumption."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seq2seq.data.batching import TokenBatchSampler

MAX_TOKENS = 64


def _lengths(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 20, size=n), rng.integers(0, 20, size=n)


def _sampler(n: int = 300, **kwargs: object) -> TokenBatchSampler:
    source, target = _lengths(n)
    return TokenBatchSampler(source, target, **{"max_tokens": MAX_TOKENS, **kwargs})  # type: ignore[arg-type]


def _epoch(sampler: TokenBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_fit_the_budget_and_cover_every_example_once(shuffle: bool) -> None:
    source, target = _lengths()
    sampler = TokenBatchSampler(source, target, max_tokens=MAX_TOKENS, shuffle=shuffle, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        cost = np.maximum(source[batch], target[batch] + 1).max()
        assert cost * len(batch) <= MAX_TOKENS
    assert sorted(itertools.chain.from_iterable(batches)) == list(range(len(source)))


def test_bucketing_groups_similar_lengths() -> None:
    source, target = _lengths(2000)
    cost = np.maximum(source, target + 1)
    batches = list(TokenBatchSampler(source, target, max_tokens=256, seed=0))
    padded = sum(cost[b].max() * len(b) for b in batches)
    assert cost.sum() / padded > 0.9  # random batches of this size waste about half


def test_unshuffled_batches_come_shortest_first() -> None:
    source, target = _lengths()
    cost = np.maximum(source, target + 1)
    batches = list(TokenBatchSampler(source, target, max_tokens=MAX_TOKENS, shuffle=False))
    ends = [cost[b].max() for b in batches]
    assert ends == sorted(ends)


def test_same_seed_and_epoch_repeat_and_other_epochs_differ() -> None:
    first = [_epoch(_sampler(seed=3), e) for e in range(3)]
    again = [_epoch(_sampler(seed=3), e) for e in range(3)]
    assert first == again
    assert first[0] != first[1] != first[2]
    assert _epoch(_sampler(seed=4), 0) != first[0]


def test_iterating_again_moves_to_the_next_epoch() -> None:
    sampler = _sampler(seed=3)
    assert list(sampler) == _epoch(_sampler(seed=3), 0)
    assert sampler.epoch == 1
    assert list(sampler) == _epoch(_sampler(seed=3), 1)


@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_two_ranks_get_equal_counts_and_disjoint_examples(remainder: str) -> None:
    n = 297  # gives an odd number of batches, so that the remainder matters
    single = _epoch(_sampler(n, seed=5), 2)
    assert len(single) % 2 == 1
    ranks = [
        _epoch(_sampler(n, seed=5, rank=r, world_size=2, remainder=remainder), 2) for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1])
    assert len(ranks[0]) == len(_sampler(n, seed=5, world_size=2, remainder=remainder))
    seen = [list(itertools.chain.from_iterable(batches)) for batches in ranks]
    if remainder == "drop":
        assert len(ranks[0]) == len(single) // 2
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == sorted(itertools.chain(*single[:-1]))
    else:
        # The epoch's first batch repeats, as rank 1's last; everything is seen.
        assert len(ranks[0]) == len(single) // 2 + 1
        assert ranks[1][-1] == single[0]
        assert not set(seen[0]) & set(seen[1][: -len(single[0])])
        assert set(seen[0]) | set(seen[1]) == set(range(n))


def test_resume_continues_at_the_next_unseen_batch() -> None:
    unbroken = _sampler(seed=9)
    expected = _epoch(unbroken, 0) + _epoch(unbroken, 1)

    first = _sampler(seed=9)
    first.set_epoch(0)
    seen = list(itertools.islice(first, 7))
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (0, 7)

    resumed = _sampler(seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # what a trainer does on resuming epoch 0; must not rewind
    seen += list(resumed)
    resumed.set_epoch(1)
    seen += list(resumed)
    assert seen == expected


def test_resume_from_the_end_of_an_epoch_starts_the_next() -> None:
    sampler = _sampler(seed=2)
    list(sampler)
    resumed = _sampler(seed=2)
    resumed.load_state_dict(sampler.state_dict())
    assert list(resumed) == _epoch(_sampler(seed=2), 1)


def test_resume_refuses_another_batch_layout() -> None:
    state = _sampler(seed=1).state_dict()
    with pytest.raises(ValueError, match=r"max_tokens=64.*max_tokens=128"):
        _sampler(seed=1, max_tokens=128).load_state_dict(state)


def test_the_layout_covers_the_lengths_not_only_the_count() -> None:
    """Edited data or other length limits keep the count but move every batch."""
    source, target = _lengths(300)
    state = TokenBatchSampler(source, target, max_tokens=MAX_TOKENS).state_dict()
    longer = [length + 1 if i % 2 else length for i, length in enumerate(target)]
    other = TokenBatchSampler(source, longer, max_tokens=MAX_TOKENS)
    assert other.layout()["num_examples"] == state["num_examples"]
    with pytest.raises(ValueError, match=r"the checkpoint has lengths='[0-9a-f]{16}' but"):
        other.load_state_dict(state)
    TokenBatchSampler(source, target, max_tokens=MAX_TOKENS).load_state_dict(state)


def test_an_example_over_the_budget_alone_names_max_tokens() -> None:
    with pytest.raises(ValueError, match=r"data.max_tokens=10 .* example 1 alone \(12 positions"):
        TokenBatchSampler([3, 12, 4], [2, 5, 11 - 3], max_tokens=10)


def test_bad_rank_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rank=2"):
        _sampler(rank=2, world_size=2)
