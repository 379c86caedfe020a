"""Beam search against exhaustive enumeration and hand-computed toy distributions.

Expected scores use `gnmt_score`, GNMT's length penalty written out here, never the
implementation's `normalised_score`: a wrong exponent in the code would otherwise change
the expected values with the found ones.
"""

from __future__ import annotations

import math

import pytest

from seq2seq import generation
from seq2seq.config.generation import GenerationConfig
from seq2seq.generation import generate
from support.toy_models import (
    EOS,
    SPECIAL,
    WORDS,
    HashToyModel,
    TableToyModel,
    all_outputs,
    padded_batch,
    sequence_log_prob,
)

MAX_LEN = 4


def gnmt_score(log_prob: float, length: int, alpha: float) -> float:
    """Wu et al. (2016), eq. 14: `log_prob / ((5 + length) / 6) ** alpha`, where `length`
    counts the scored tokens, eos included."""
    return log_prob / ((5 + length) / 6) ** alpha


@pytest.mark.parametrize(
    ("length", "alpha", "penalty"),
    [
        (1, 0.6, 1.0),  # (5 + 1) / 6 = 1
        (4, 0.0, 1.0),  # alpha 0: no normalisation
        (7, 1.0, 2.0),  # 12 / 6
        (7, 0.5, math.sqrt(2.0)),
        (13, 0.5, math.sqrt(3.0)),  # 18 / 6 = 3
        (31, 2.0, 36.0),  # 36 / 6 = 6, squared
        (3, 0.6, 1.1884),  # (8 / 6) ** 0.6 = exp(0.6 * 0.28768)
    ],
)
def test_length_penalty_is_gnmt_formula_by_hand(length: int, alpha: float, penalty: float) -> None:
    assert generation.length_penalty(length, alpha) == pytest.approx(penalty, rel=1e-4)
    assert generation.normalised_score(-6.0, length, alpha) == pytest.approx(
        -6.0 / penalty, rel=1e-4
    )


@pytest.mark.parametrize(
    ("length_penalty", "min_len", "source"),
    [(0.0, 0, [3, 4]), (0.0, 2, [5, 5, 4]), (1.0, 0, [4]), (2.0, 1, [3, 5, 4, 3])],
)
def test_exhaustive_beam_ranks_every_output_like_enumeration(
    length_penalty: float,
    min_len: int,
    source: list[int],
) -> None:
    # A beam as wide as the output space keeps every prefix, so the n-best list must be
    # the whole space, ranked exactly as by scoring each sequence alone.
    model = HashToyModel(seed=1)
    src_tokens, src_mask = padded_batch([source])
    outputs = all_outputs(min_len, MAX_LEN)
    expected = []
    for sequence in outputs:
        log_prob = sequence_log_prob(model, src_tokens, src_mask, sequence)
        score = gnmt_score(log_prob, len(sequence) + 1, length_penalty)
        expected.append((score, log_prob, list(sequence)))
    expected.sort(reverse=True)
    settings = GenerationConfig(
        strategy="beam",
        beam_size=len(outputs),
        nbest=len(outputs),
        length_penalty=length_penalty,
        max_len_a=0.0,
        max_len_b=MAX_LEN,
        min_len=min_len,
    )

    [found] = generate(model, src_tokens, src_mask, settings, **SPECIAL)

    assert found[0].tokens == expected[0][2]  # the exhaustive optimum
    assert [h.tokens for h in found] == [tokens for _, _, tokens in expected]
    assert [h.log_prob for h in found] == pytest.approx([lp for _, lp, _ in expected], abs=1e-4)
    assert [h.score for h in found] == pytest.approx([s for s, _, _ in expected], abs=1e-4)


def test_narrow_beam_finds_the_exhaustive_optimum_that_greedy_misses() -> None:
    model = HashToyModel(seed=1)
    src_tokens, src_mask = padded_batch([[3, 4]])
    best = max(
        all_outputs(0, MAX_LEN),
        key=lambda sequence: sequence_log_prob(model, src_tokens, src_mask, sequence),
    )
    common = {"max_len_a": 0.0, "max_len_b": MAX_LEN, "min_len": 0, "length_penalty": 0.0}
    [[greedy]] = generate(
        model, src_tokens, src_mask, GenerationConfig(strategy="greedy", **common), **SPECIAL
    )
    [[beam, *_]] = generate(
        model,
        src_tokens,
        src_mask,
        GenerationConfig(strategy="beam", beam_size=4, **common),
        **SPECIAL,
    )
    assert greedy.tokens != list(best)
    assert beam.tokens == list(best)


def test_beam_of_two_escapes_the_greedy_trap() -> None:
    # After "a" the continuation is uncertain, after "b" it almost surely ends, so
    # greedy's "a" (0.6, then at best eos 0.4) loses to "b eos" (0.4 * 0.9 = 0.36 > 0.24).
    a, b, eos = WORDS[0], WORDS[1], EOS
    model = TableToyModel(
        {
            (): {a: 0.6, b: 0.4},
            (a,): {eos: 0.4, a: 0.3, b: 0.3},
            (b,): {eos: 0.9, a: 0.05, b: 0.05},
        }
    )
    src_tokens, src_mask = padded_batch([[3]])
    common = {"length_penalty": 0.0, "max_len_a": 0.0, "max_len_b": 3, "min_len": 0}
    [[greedy]] = generate(
        model, src_tokens, src_mask, GenerationConfig(strategy="greedy", **common), **SPECIAL
    )
    [[best, second]] = generate(
        model,
        src_tokens,
        src_mask,
        GenerationConfig(strategy="beam", beam_size=2, nbest=2, **common),
        **SPECIAL,
    )
    assert greedy.tokens == [a]
    assert greedy.log_prob == pytest.approx(math.log(0.6 * 0.4), abs=1e-5)
    assert best.tokens == [b]
    assert best.log_prob == pytest.approx(math.log(0.4 * 0.9), abs=1e-5)
    assert second.tokens == [a]
    assert second.log_prob == pytest.approx(math.log(0.6 * 0.4), abs=1e-5)


def test_length_penalty_flips_the_narrow_beams_choice_as_in_exhaustive_search() -> None:
    """A short output "a" (P = 0.5 * 0.6 = 0.3, 2 scored tokens with eos) against a long
    one "b b b" (P = 0.5 * 0.7 * 0.7 = 0.245, 4 scored tokens). Raw log-probabilities
    prefer the short one; GNMT's penalty favours length more as alpha grows:
    alpha 0.5: ln 0.3 / (7/6)^0.5 = -1.115 > ln 0.245 / (9/6)^0.5 = -1.148 (short);
    alpha 1: -1.032 < -0.938 (long). A beam of 2 must choose what exhaustive search
    over all 121 outputs, scored with `gnmt_score`, chooses, with that score."""
    a, b, eos = WORDS[0], WORDS[1], EOS
    model = TableToyModel(
        {
            (): {a: 0.5, b: 0.5},
            (a,): {eos: 0.6, b: 0.4},
            (a, b): {b: 1.0},  # "a b b" (P = 0.2) keeps the beam busy until "b b b" ends
            (b,): {b: 0.7, eos: 0.3},
            (b, b): {b: 0.7, eos: 0.3},
            (b, b, b): {eos: 1.0},
        }
    )
    src_tokens, src_mask = padded_batch([[3]])
    outputs = all_outputs(0, MAX_LEN)
    log_probs = {seq: sequence_log_prob(model, src_tokens, src_mask, seq) for seq in outputs}
    chosen = []
    for alpha in (0.0, 0.5, 1.0, 2.0):
        best = max(outputs, key=lambda seq: gnmt_score(log_probs[seq], len(seq) + 1, alpha))
        settings = GenerationConfig(
            strategy="beam",
            beam_size=2,
            length_penalty=alpha,
            max_len_a=0.0,
            max_len_b=MAX_LEN,
            min_len=0,
        )
        [[found, *_]] = generate(model, src_tokens, src_mask, settings, **SPECIAL)
        assert found.tokens == list(best), alpha
        assert found.score == pytest.approx(
            gnmt_score(log_probs[best], len(best) + 1, alpha), abs=1e-5
        )
        chosen.append(found.tokens)
    assert chosen == [[a], [a], [b, b, b], [b, b, b]]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_of_one_is_greedy(
    length_penalty: float,
) -> None:
    model = HashToyModel(seed=2)
    src_tokens, src_mask = padded_batch([[3, 4, 5], [4], [5, 3], [3, 3, 3, 4, 5]])
    common = {"length_penalty": length_penalty, "max_len_a": 1.0, "max_len_b": 2, "min_len": 0}
    greedy = generate(
        model, src_tokens, src_mask, GenerationConfig(strategy="greedy", **common), **SPECIAL
    )
    beam = generate(
        model,
        src_tokens,
        src_mask,
        GenerationConfig(strategy="beam", beam_size=1, **common),
        **SPECIAL,
    )
    for [from_beam], [from_greedy] in zip(beam, greedy, strict=True):
        assert from_beam.tokens == from_greedy.tokens
        assert from_beam.log_prob == pytest.approx(from_greedy.log_prob, abs=1e-5)
        assert from_beam.score == pytest.approx(from_greedy.score, abs=1e-5)


def test_nbest_is_sorted_by_score_and_distinct() -> None:
    model = HashToyModel(seed=3)
    src_tokens, src_mask = padded_batch([[3, 4, 5, 3], [5]])
    settings = GenerationConfig(
        strategy="beam", beam_size=5, nbest=4, length_penalty=1.0, max_len_a=1.0, max_len_b=2
    )
    for hypotheses in generate(model, src_tokens, src_mask, settings, **SPECIAL):
        assert len(hypotheses) == 4
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hypotheses}) == 4
        for h in hypotheses:
            assert h.score == pytest.approx(gnmt_score(h.log_prob, len(h.tokens) + 1, 1.0))
            assert not set(h.tokens) & set(SPECIAL.values())


def test_search_stops_once_every_example_has_k_finished() -> None:
    model = HashToyModel(seed=4, eos_bias=30.0)
    src_tokens, src_mask = padded_batch([[3, 4], [5, 5, 5]])
    settings = GenerationConfig(strategy="beam", beam_size=2, min_len=0, max_len_b=50)
    results = generate(model, src_tokens, src_mask, settings, **SPECIAL)
    # Step 0 finishes the empty output (only beam 0 is live), step 1 a one-token one:
    # two finished per example, so the search ends long before max_len_b.
    assert model.steps == 2
    assert [hyps[0].tokens for hyps in results] == [[], []]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_model_that_never_ends_still_gives_every_source_an_output(beam_size: int) -> None:
    """eos has probability zero everywhere, so even the eos forced at the length limit
    is -inf: the best beam ends there anyway, scored -inf, as greedy search does."""
    model = HashToyModel(seed=5, eos_bias=float("-inf"))
    src_tokens, src_mask = padded_batch([[3, 4], [5, 5, 5, 4]])
    common = {"max_len_a": 1.0, "max_len_b": 1}
    beam = generate(
        model,
        src_tokens,
        src_mask,
        GenerationConfig(strategy="beam", beam_size=beam_size, **common),
        **SPECIAL,
    )
    greedy = generate(
        model, src_tokens, src_mask, GenerationConfig(strategy="greedy", **common), **SPECIAL
    )
    for [from_beam], [from_greedy], length in zip(beam, greedy, [3, 5], strict=True):
        assert len(from_beam.tokens) == len(from_greedy.tokens) == length
        assert from_beam.log_prob == from_beam.score == float("-inf")
        if beam_size == 1:
            assert from_beam.tokens == from_greedy.tokens
