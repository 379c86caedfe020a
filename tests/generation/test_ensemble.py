"""Ensemble decoding: the mean of the members' probabilities at every step, each member
over its own incremental state.

References written plainly here: the average of hand-listed toy distributions, a
sequence's ensemble log-probability from each member fed alone (no batch, no reorder),
and full forward passes of tiny real models (a KV cache and a causal-linear state side by
side).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation import Hypothesis, generate
from seq2seq.generation.ensemble import (
    ENSEMBLES,
    EncoderDecoderEnsemble,
    Ensemble,
    LanguageModelEnsemble,
    average_log_probs,
    ensemble,
)
from seq2seq.generation.prompted import PromptedModel
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID
from support.tiny_models import VOCAB, linear_settings, tiny_config, tiny_model
from support.toy_models import (
    EOS,
    SPECIAL,
    VOCAB_SIZE,
    HashToyModel,
    TableToyModel,
    padded_batch,
)

pytestmark = pytest.mark.usefixtures("single_thread")

STRATEGIES = {
    "greedy": GenerationConfig(strategy="greedy", max_len=6),
    "beam": GenerationConfig(strategy="beam", beam_size=3, nbest=3, max_len=6),
    "sample": GenerationConfig(strategy="sample", seed=5, max_len=6),
}


class ToyModule(nn.Module):
    """A toy model as the module an ensemble holds."""

    def __init__(self, toy: Any) -> None:
        super().__init__()
        self.toy = toy

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        return self.toy.encode(src_tokens, src_mask)

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> Any:
        return self.toy.init_state(memory, memory_mask)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.toy.step(tokens, state)


def outputs(nbests: list[list[Hypothesis]]) -> list[list[tuple[int, ...]]]:
    return [[tuple(h.tokens) for h in nbest] for nbest in nbests]


def figures(nbests: list[list[Hypothesis]]) -> list[list[tuple[float, float]]]:
    return [[(h.score, h.log_prob) for h in nbest] for nbest in nbests]


# --- the average -----------------------------------------------------------------------


def test_the_average_is_the_log_of_the_mean_probability() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(4, 7, generator=generator) * 3 for _ in range(3)]
    logits[1][0, 2] = float("-inf")  # a token one member rules out keeps the others' mass
    probs = torch.stack([torch.softmax(z.double(), dim=-1) for z in logits])
    expected = probs.mean(0).log()
    got = average_log_probs(logits)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(got).all()
    # One member passes through as it is: an ensemble of one is the model alone.
    assert average_log_probs(logits[:1]) is logits[0]


def test_an_unknown_model_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="no ensemble for model kind 'rnn'; valid kinds: "):
        ensemble([nn.Linear(2, 2)], model_kind="rnn")
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])
    assert set(ENSEMBLES) == {"encoder_decoder", "decoder_lm", "encoder_classifier"}


# --- toy members against hand-computed averages ------------------------------------------

# Member A's greedy and best output is (3,); B's is (5, 3); the ensemble's is (4,), which
# neither member ranks first.
TABLE_A = {(): {3: 0.5, 4: 0.4, 5: 0.1}, (3,): {EOS: 0.9, 4: 0.1}, (4,): {EOS: 0.3, 3: 0.7}}
TABLE_B = {(): {3: 0.1, 4: 0.4, 5: 0.5}, (3,): {4: 1.0}, (4,): {EOS: 0.9, 5: 0.1}, (5,): {3: 1.0}}


def table_probs(
    table: dict[tuple[int, ...], dict[int, float]], prefix: tuple[int, ...]
) -> list[float]:
    """The distribution TableToyModel gives after `prefix`: listed probabilities, 1e-6 for
    the rest, normalized (its logits are the logs of these)."""
    listed = table.get(prefix, {EOS: 1.0})
    raw = [listed.get(token, 1e-6) for token in range(VOCAB_SIZE)]
    return [p / sum(raw) for p in raw]


def hand_log_prob(tokens: tuple[int, ...]) -> float:
    """log P(tokens, eos) under the ensemble of A and B: the mean of their probabilities
    at each step."""
    total = 0.0
    for position, target in enumerate((*tokens, EOS)):
        prefix = tokens[:position]
        mean = (table_probs(TABLE_A, prefix)[target] + table_probs(TABLE_B, prefix)[target]) / 2
        total += math.log(mean)
    return total


def toy_pair() -> EncoderDecoderEnsemble:
    return EncoderDecoderEnsemble(
        [ToyModule(TableToyModel(TABLE_A)), ToyModule(TableToyModel(TABLE_B))]
    )


def test_each_step_is_the_mean_of_the_members_probabilities() -> None:
    model = toy_pair()
    src, mask = padded_batch([[3, 4]])
    state = model.init_state(model.encode(src, mask), mask)
    for fed, prefix in ((1, ()), (4, (4,)), (3, (4, 3))):
        log_probs, state = model.step(torch.tensor([fed]), state)
        expected = [
            math.log((a + b) / 2)
            for a, b in zip(table_probs(TABLE_A, prefix), table_probs(TABLE_B, prefix), strict=True)
        ]
        torch.testing.assert_close(
            log_probs[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_two_toy_models_decode_the_hand_computed_best(strategy: str) -> None:
    settings = GenerationConfig(
        strategy=strategy, beam_size=3, nbest=3, length_penalty=0.0, max_len=3
    )
    src, mask = padded_batch([[3, 4]])
    alone = [
        generate(TableToyModel(table), src, mask, settings, **SPECIAL)[0][0].tokens
        for table in (TABLE_A, TABLE_B)
    ]
    (nbest,) = generate(toy_pair(), src, mask, settings, **SPECIAL)
    assert tuple(nbest[0].tokens) == (4,)
    assert [tuple(tokens) for tokens in alone] == [(3,), (5, 3)]
    for hypothesis in nbest:
        assert hypothesis.log_prob == pytest.approx(
            hand_log_prob(tuple(hypothesis.tokens)), abs=1e-5
        )
    if strategy == "beam":  # the n-best, ranked, against every output up to the limit
        ranked = sorted(
            [(3,), (4,), (5,), (3, 4), (4, 3), (5, 3), (4, 5)], key=hand_log_prob, reverse=True
        )
        assert [tuple(h.tokens) for h in nbest] == ranked[:3]


# --- history-dependent states: every member's state follows the beams --------------------


def ensemble_log_prob(
    members: list[HashToyModel], src: Tensor, mask: Tensor, tokens: list[int]
) -> float:
    """log P(tokens, eos | one source row) under the mean of the members' probabilities,
    each member fed the row alone: no batch, no reorder."""
    per_member = []
    for member in members:
        state = member.init_state(member.encode(src, mask), mask)
        steps = []
        for previous, target in zip((1, *tokens), (*tokens, EOS), strict=True):
            logits, state = member.step(torch.tensor([previous]), state)
            steps.append(torch.softmax(logits[0].double(), dim=-1)[target].item())
        per_member.append(steps)
    return sum(math.log(sum(column) / len(column)) for column in zip(*per_member, strict=True))


@pytest.mark.parametrize("strategy", ["beam", "sample"])
def test_every_member_state_follows_the_rows(strategy: str) -> None:
    """HashToyModel's distribution depends on the whole prefix through its state: a member
    whose state did not follow beam search's reorder would score its rows' tokens from
    another row's history."""
    members = [HashToyModel(seed=0, eos_bias=-0.5), HashToyModel(seed=1, eos_bias=-0.5)]
    sources = [[3, 4, 5], [5], [4, 4, 3, 5], [3, 3]]
    src, mask = padded_batch(sources)
    settings = replace(STRATEGIES[strategy], max_len=5)
    nbests = generate(
        EncoderDecoderEnsemble([ToyModule(m) for m in members]), src, mask, settings, **SPECIAL
    )
    checked = 0
    for row, nbest in enumerate(nbests):
        for hypothesis in nbest:
            expected = ensemble_log_prob(
                members, src[row : row + 1], mask[row : row + 1], hypothesis.tokens
            )
            assert hypothesis.log_prob == pytest.approx(expected, abs=1e-4), (row, hypothesis)
            checked += 1
    assert checked == (len(sources) * 3 if strategy == "beam" else len(sources))


# --- tiny real models -------------------------------------------------------------------


def encoder_decoder(
    *, decoder: str, layers: int, d_model: int, seed: int
) -> EncoderDecoderTransformer:
    cfg = tiny_config(
        encoder="softmax",
        decoder=decoder,
        cross="softmax",
        linear=linear_settings(decoder, chunk_size=4),
        layers=layers,
        d_model=d_model,
        max_len=64,
        tie_output_embeddings=False,
    )
    torch.manual_seed(seed)
    model = tiny_model(cfg, seed=seed, pad_id=PAD_ID)
    eos_row = model.decoder.output.weight[EOS_ID]
    with torch.no_grad():  # leans towards eos, so that outputs end before the limit
        model.decoder.final_norm.bias.copy_(eos_row / eos_row.norm())
    return model.eval()


def sources() -> tuple[Tensor, Tensor]:
    lengths = [5, 2, 4]
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(EOS_ID + 1, VOCAB, (len(lengths), max(lengths)), generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    return tokens.masked_fill(~mask, PAD_ID), mask


def decode(model: Any, settings: GenerationConfig) -> list[list[Hypothesis]]:
    return generate(model, *sources(), settings, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_an_ensemble_of_one_decodes_as_the_model_alone(strategy: str) -> None:
    model = encoder_decoder(decoder="softmax", layers=2, d_model=32, seed=0)
    alone = decode(model, STRATEGIES[strategy])
    one = decode(EncoderDecoderEnsemble([model]), STRATEGIES[strategy])
    assert outputs(one) == outputs(alone)
    assert figures(one) == figures(alone)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_same_model_twice_decodes_as_the_model_alone(strategy: str) -> None:
    model = encoder_decoder(decoder="causal_linear", layers=2, d_model=32, seed=0)
    alone = decode(model, STRATEGIES[strategy])
    twice = decode(EncoderDecoderEnsemble([model, model]), STRATEGIES[strategy])
    assert outputs(twice) == outputs(alone)
    if strategy != "sample":  # outputs that end at different steps (samples run on)
        assert len({len(nbest[0].tokens) for nbest in alone}) > 1
    torch.testing.assert_close(torch.tensor(figures(twice)), torch.tensor(figures(alone)))


def full_forward_log_prob(
    models: list[EncoderDecoderTransformer], src: Tensor, mask: Tensor, tokens: list[int]
) -> float:
    """log P(tokens, eos | one source row) under the mean of the members' probabilities,
    by one full forward pass of each member over bos + tokens."""
    tgt_input = torch.tensor([[BOS_ID, *tokens]])
    targets = [*tokens, EOS_ID]
    per_member = []
    with torch.no_grad():
        for model in models:
            logits = model(src, mask, tgt_input, torch.ones_like(tgt_input, dtype=torch.bool))
            probs = torch.softmax(logits[0].double(), dim=-1)
            per_member.append(probs[torch.arange(len(targets)), torch.tensor(targets)])
    return float(torch.stack(per_member).mean(0).log().sum())


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_different_members_score_as_their_full_forward_passes(strategy: str) -> None:
    """A softmax decoder (a KV cache) beside a narrower, shallower causal-linear one (its
    (S, z) state): every hypothesis scores what the members' full passes average to."""
    members = [
        encoder_decoder(decoder="softmax", layers=2, d_model=32, seed=0),
        encoder_decoder(decoder="causal_linear", layers=1, d_model=16, seed=1),
    ]
    nbests = decode(EncoderDecoderEnsemble(members), STRATEGIES[strategy])
    src, mask = sources()
    for row, nbest in enumerate(nbests):
        assert nbest
        for hypothesis in nbest:
            expected = full_forward_log_prob(
                members, src[row : row + 1], mask[row : row + 1], hypothesis.tokens
            )
            assert hypothesis.log_prob == pytest.approx(expected, abs=1e-4), (row, hypothesis)


# --- the other model kinds ---------------------------------------------------------------


def test_language_models_continue_prompts_as_one() -> None:
    def lm(seed: int, decoder: str) -> Any:
        cfg = tiny_config(
            kind="decoder_lm", decoder=decoder, linear=linear_settings(decoder), max_len=32
        )
        return tiny_model(cfg, seed=seed, pad_id=PAD_ID).eval()

    first, second = lm(0, "softmax"), lm(1, "causal_linear")
    prompts = torch.tensor([[EOS_ID, 5, 6, 7], [EOS_ID, 9, 9, 4]])
    mask = torch.ones_like(prompts, dtype=torch.bool)
    settings = {name: replace(s, max_len=5) for name, s in STRATEGIES.items()}

    def continue_with(model: Any, name: str) -> list[list[Hypothesis]]:
        return generate(
            PromptedModel(model),
            prompts,
            mask,
            settings[name],
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
        )

    for name in settings:
        alone = continue_with(first, name)
        assert figures(continue_with(LanguageModelEnsemble([first]), name)) == figures(alone)
        twice = continue_with(LanguageModelEnsemble([first, first]), name)
        assert outputs(twice) == outputs(alone)
        torch.testing.assert_close(torch.tensor(figures(twice)), torch.tensor(figures(alone)))
    # The forward pass (loss, perplexity) averages each position's probabilities.
    pair = LanguageModelEnsemble([first, second])
    with torch.no_grad():
        expected = (
            torch.softmax(first(prompts, None), -1) + torch.softmax(second(prompts, None), -1)
        ) / 2
        torch.testing.assert_close(pair(prompts, None).exp(), expected)


def test_classifiers_average_their_class_probabilities() -> None:
    def classifier(seed: int, layers: int) -> Any:
        cfg = tiny_config(kind="encoder_classifier", layers=layers, max_len=32)
        return tiny_model(cfg, seed=seed, pad_id=PAD_ID, num_classes=3).eval()

    members = [classifier(0, 2), classifier(1, 1)]
    tokens = torch.tensor([[4, 5, 6, 0], [7, 8, 0, 0]])
    mask = tokens != PAD_ID
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(tokens, mask), -1) for m in members]).mean(0)
        torch.testing.assert_close(
            ensemble(members, model_kind="encoder_classifier")(tokens, mask).exp(), expected
        )
        alone = members[0](tokens, mask)
        assert torch.equal(Ensemble(members[:1])(tokens, mask), alone)
