"""Sampling: reproducibility, filters, temperature, and its greedy limits."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation import generate, top_k_filter, top_p_filter
from support.toy_models import BOS, SPECIAL, WORDS, HashToyModel, padded_batch, sequence_log_prob

SOURCES = [[3, 4, 5], [4], [5, 3, 3, 4, 5, 3], [3, 5], [4, 4], [5, 4, 3]]
COMMON = {"max_len_a": 1.0, "max_len_b": 3, "min_len": 0}


def sample_tokens(model: Any, batch: tuple[Tensor, Tensor], **fields: Any) -> list[list[int]]:
    settings = GenerationConfig(strategy="sample", **{**COMMON, **fields})
    return [hyps[0].tokens for hyps in generate(model, *batch, settings, **SPECIAL)]


def test_same_seed_same_output_other_seed_other_output() -> None:
    model = HashToyModel(seed=9, sharpness=0.5)  # flat distributions: many likely outputs
    batch = padded_batch(SOURCES)
    first = sample_tokens(model, batch, seed=11)
    assert sample_tokens(model, batch, seed=11) == first
    assert sample_tokens(model, batch, seed=12) != first


def test_a_sample_depends_on_its_source_index_not_on_the_batch() -> None:
    """A corpus decoded in other batches samples the same; the same source at another
    index gets its own draws (a fresh stream per batch would repeat the first draws)."""
    model = HashToyModel(seed=9, sharpness=0.5)
    settings = GenerationConfig(strategy="sample", seed=3, **COMMON)
    whole = generate(model, *padded_batch(SOURCES), settings, **SPECIAL)
    for index, source in enumerate(SOURCES):
        alone = generate(model, *padded_batch([source]), settings, source_ids=[index], **SPECIAL)
        assert alone[0][0].tokens == whole[index][0].tokens
    repeated = [SOURCES[2]] * 4
    samples = generate(model, *padded_batch(repeated), settings, **SPECIAL)
    assert len({tuple(hyps[0].tokens) for hyps in samples}) > 1


@pytest.mark.parametrize(
    "fields",
    [{"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-4}],
    ids=["top_k=1", "tiny-top_p", "tiny-temperature"],
)
def test_degenerate_sampling_is_greedy(
    fields: dict[str, Any],
) -> None:
    model = HashToyModel(seed=10, sharpness=0.5)
    batch = padded_batch(SOURCES)
    greedy = generate(model, *batch, GenerationConfig(strategy="greedy", **COMMON), **SPECIAL)
    greedy_tokens = [hyps[0].tokens for hyps in greedy]
    for seed in range(3):
        assert sample_tokens(model, batch, seed=seed, **fields) == greedy_tokens


def first_token_frequencies(model: Any, **fields: Any) -> tuple[Tensor, Tensor]:
    """Empirical distribution of the first sampled token over many copies of one source,
    and the model's logits for it. min_len=1 keeps eos out of the first position."""
    copies = 4000
    batch = padded_batch([[3, 4]] * copies)
    settings = GenerationConfig(strategy="sample", max_len_b=1, min_len=1, **fields)
    firsts = torch.tensor(
        [hyps[0].tokens[0] for hyps in generate(model, *batch, settings, **SPECIAL)]
    )
    frequencies = torch.bincount(firsts, minlength=6).double() / copies
    tokens, mask = padded_batch([[3, 4]])
    logits, _ = model.step(torch.tensor([BOS]), model.init_state(model.encode(tokens, mask), mask))
    return frequencies, logits[0].double()


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_first_token_follows_the_tempered_distribution_over_allowed_tokens(
    temperature: float,
) -> None:
    model = HashToyModel(seed=13)
    frequencies, logits = first_token_frequencies(model, temperature=temperature)
    # pad, bos and (before min_len) eos are never sampled; the WORDS share the mass.
    expected = torch.zeros_like(logits)
    expected[list(WORDS)] = torch.softmax(logits[list(WORDS)] / temperature, dim=0)
    assert frequencies.tolist() == pytest.approx(expected.tolist(), abs=0.035)


def test_top_k_samples_only_among_the_k_most_likely() -> None:
    model = HashToyModel(seed=13)
    frequencies, logits = first_token_frequencies(model, top_k=2)
    allowed = sorted(WORDS, key=lambda token: -logits[token].item())[:2]
    expected = torch.zeros_like(logits)
    expected[allowed] = torch.softmax(logits[allowed], dim=0)
    assert frequencies.tolist() == pytest.approx(expected.tolist(), abs=0.035)


def test_sampled_log_prob_is_the_models_own() -> None:
    model = HashToyModel(seed=14)
    settings = GenerationConfig(strategy="sample", temperature=3.0, top_k=2, **COMMON)
    src_tokens, src_mask = padded_batch(SOURCES)
    for row, [h] in enumerate(generate(model, src_tokens, src_mask, settings, **SPECIAL)):
        expected = sequence_log_prob(
            model, src_tokens[row : row + 1], src_mask[row : row + 1], tuple(h.tokens)
        )
        assert h.log_prob == pytest.approx(expected, abs=1e-4)


LOGITS = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))


@pytest.mark.parametrize(
    ("k", "kept"), [(0, [0, 1, 2, 3]), (1, [1]), (2, [1, 3]), (3, [1, 2, 3]), (9, [0, 1, 2, 3])]
)
def test_top_k_filter(k: int, kept: list[int]) -> None:
    filtered = top_k_filter(LOGITS, k)
    assert torch.isfinite(filtered[0]).nonzero().flatten().tolist() == kept


@pytest.mark.parametrize(
    ("p", "kept"),
    [(1.0, [0, 1, 2, 3]), (1e-9, [1]), (0.45, [1]), (0.7, [1, 3]), (0.9, [1, 2, 3])],
)
def test_top_p_filter_keeps_the_smallest_nucleus_reaching_p(p: float, kept: list[int]) -> None:
    filtered = top_p_filter(LOGITS, p)
    assert torch.isfinite(filtered[0]).nonzero().flatten().tolist() == kept
    assert torch.equal(filtered[0, kept], LOGITS[0, kept])


def test_filters_keep_rows_independent() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]))
    assert torch.isfinite(top_p_filter(logits, 0.6)).tolist() == [
        [True, False, False],
        [False, False, True],
    ]
    assert torch.isfinite(top_k_filter(logits, 1)).tolist() == [
        [True, False, False],
        [False, False, True],
    ]
    assert math.isinf(top_k_filter(logits, 2)[0, 2].item())
