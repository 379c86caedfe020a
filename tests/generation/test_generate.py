"""``generate`` for every registered strategy: length limits, batching, early stop, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from seq2seq.config.generation import GenerationConfig, Strategy
from seq2seq.generation import STRATEGIES, generate, get_strategy
from support.toy_models import SPECIAL, HashToyModel, padded_batch

SOURCES = [[3, 4, 5], [4], [5, 3, 3, 4, 5, 3], [3, 5]]


def settings_for(strategy: str, **fields: Any) -> GenerationConfig:
    """`fields` over a cap of 12 tokens (the tasks always set one; decoding needs a limit)."""
    fields = {"max_len": 12, **fields}
    if strategy == "beam":
        fields = {"beam_size": 3, "nbest": 3, **fields}
    return GenerationConfig(strategy=strategy, **fields)


def test_registry_matches_the_names_settings_accept() -> None:
    assert set(STRATEGIES) == set(Strategy.names())


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'nucleus'.*greedy, beam, sample"):
        get_strategy("nucleus")


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize(("max_len_a", "max_len_b"), [(1.0, 1), (0.5, 2), (0.0, 3)])
def test_outputs_reach_but_never_pass_their_own_max_length(
    strategy: str,
    max_len_a: float,
    max_len_b: int,
) -> None:
    # The model almost never ends, so each output runs to floor(a * S + b) exactly.
    model = HashToyModel(seed=5, eos_bias=-30.0)
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy, max_len_a=max_len_a, max_len_b=max_len_b)
    results = generate(model, src_tokens, src_mask, settings, **SPECIAL)
    for source, hypotheses in zip(SOURCES, results, strict=True):
        limit = math.floor(max_len_a * len(source) + max_len_b)
        assert hypotheses
        assert all(len(h.tokens) == limit for h in hypotheses)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize(("eos_bias", "cut"), [(-30.0, True), (30.0, False)], ids=["cut", "ended"])
def test_an_output_says_whether_it_stopped_at_its_limit(
    strategy: str,
    eos_bias: float,
    cut: bool,
) -> None:
    """A model that never ends runs into its limit, where eos is forced: every hypothesis
    says so; one that ends at its first chance (min_len 1) is not at its limit."""
    model = HashToyModel(seed=5, eos_bias=eos_bias)
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy, max_len_a=1.0, max_len_b=2)
    for source, hypotheses in zip(
        SOURCES, generate(model, src_tokens, src_mask, settings, **SPECIAL), strict=True
    ):
        assert hypotheses
        assert all(h.at_limit == cut for h in hypotheses)
        assert all((len(h.tokens) == len(source) + 2) == cut for h in hypotheses)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_hard_cap_max_len_wins_over_a_and_b(strategy: str) -> None:
    model = HashToyModel(seed=5, eos_bias=-30.0)
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy, max_len_a=2.0, max_len_b=5, max_len=4, min_len=0)
    for hypotheses in generate(model, src_tokens, src_mask, settings, **SPECIAL):
        assert all(len(h.tokens) == 4 for h in hypotheses)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_min_len_forbids_an_earlier_eos(strategy: str) -> None:
    # The model wants to end at once; min_len makes it wait, and then it ends.
    model = HashToyModel(seed=6, eos_bias=30.0)
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy, min_len=3, max_len_b=10)
    for hypotheses in generate(model, src_tokens, src_mask, settings, **SPECIAL):
        assert len(hypotheses[0].tokens) == 3
        assert all(len(h.tokens) >= 3 for h in hypotheses)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_decoding_stops_when_every_example_has_ended(strategy: str) -> None:
    model = HashToyModel(seed=6, eos_bias=30.0)
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy, min_len=1, max_len_b=100)
    generate(model, src_tokens, src_mask, settings, **SPECIAL)
    assert model.steps <= 3


@pytest.mark.parametrize(
    "settings",
    [
        GenerationConfig(strategy="greedy", max_len_a=1.0, max_len_b=2, min_len=0),
        GenerationConfig(strategy="beam", beam_size=3, nbest=3, max_len_a=1.0, max_len_b=2),
        GenerationConfig(strategy="beam", beam_size=4, length_penalty=0.0, min_len=2, max_len=9),
        GenerationConfig(strategy="sample", top_k=1, max_len_a=0.5, max_len_b=3),
    ],
    ids=["greedy", "beam-nbest", "beam-min_len", "sample-top1"],
)
def test_a_padded_batch_decodes_like_each_source_alone(
    settings: GenerationConfig,
) -> None:
    model = HashToyModel(seed=7)
    src_tokens, src_mask = padded_batch(SOURCES)
    together = generate(model, src_tokens, src_mask, settings, **SPECIAL)
    for source, from_batch in zip(SOURCES, together, strict=True):
        alone_tokens, alone_mask = padded_batch([source])
        [alone] = generate(model, alone_tokens, alone_mask, settings, **SPECIAL)
        assert [h.tokens for h in from_batch] == [h.tokens for h in alone]
        assert [h.log_prob for h in from_batch] == pytest.approx(
            [h.log_prob for h in alone], abs=1e-5
        )


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_generate_runs_without_autograd_and_returns_python_values(strategy: str) -> None:
    model = HashToyModel(seed=8)
    src_tokens, src_mask = padded_batch(SOURCES)
    results = generate(model, src_tokens, src_mask, settings_for(strategy), **SPECIAL)
    assert model.inference_mode_seen == {True}
    assert len(results) == len(SOURCES)
    for hypotheses in results:
        for h in hypotheses:
            assert all(type(token) is int for token in h.tokens)
            assert isinstance(h.score, float) and isinstance(h.log_prob, float)
            assert math.isfinite(h.log_prob) and h.log_prob <= 0.0


def test_empty_batch_gives_no_hypotheses() -> None:
    empty = torch.zeros(0, 3, dtype=torch.long)
    assert generate(HashToyModel(), empty, empty.bool(), GenerationConfig(), **SPECIAL) == []


def test_malformed_inputs_are_rejected() -> None:
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = GenerationConfig()
    with pytest.raises(ValueError, match="src_tokens must be a"):
        generate(HashToyModel(), src_tokens.float(), src_mask, settings, **SPECIAL)
    with pytest.raises(ValueError, match="src_mask must be a bool tensor"):
        generate(HashToyModel(), src_tokens, src_mask.long(), settings, **SPECIAL)
    with pytest.raises(ValueError, match="src_mask must be a bool tensor"):
        generate(HashToyModel(), src_tokens, src_mask[:, :-1], settings, **SPECIAL)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_special_ids_are_checked_against_the_vocabulary(strategy: str) -> None:
    src_tokens, src_mask = padded_batch(SOURCES)
    settings = settings_for(strategy)
    with pytest.raises(ValueError, match=r"eos_id=6 is outside the model's vocabulary of 6"):
        generate(HashToyModel(), src_tokens, src_mask, settings, bos_id=1, eos_id=6, pad_id=0)
    with pytest.raises(ValueError, match="eos_id and pad_id are both 0"):
        generate(HashToyModel(), src_tokens, src_mask, settings, bos_id=1, eos_id=0, pad_id=0)
