"""The count of outputs at the length limit (`at_length_limit`) when beam search returns
n-best lists longer than one.

The contract: one output per example, its best hypothesis (the line `predictions.txt`
holds and the metrics score), and the figure counts the examples whose output stopped at
the limit. The n-best list's other hypotheses are alternatives, not outputs: whether they
reached the limit counts for nothing, and the warning's total is the number of examples
(docs/generation.md, "Length limit": "26 of 40 test outputs stopped at the length
limit"). Greedy search and sampling return one hypothesis per example (the config
refuses `nbest > 1` for them), so beam search is where the lists are longer than one.

A table toy (`support.toy_models.TableToyModel`) fixes every n-best list, and a limit
relative to the source (`max_len_a=1`: as many output tokens as source tokens) gives each
example of one batch its own limit, so the examples cover every case: the best
hypothesis and the others at the limit, the best alone, the others alone, neither.
Counting every hypothesis, any hypothesis, the last one or each output twice gives
another number than the expected 3.
"""

from __future__ import annotations

import logging
from typing import cast

import pytest
import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig, Strategy, check_generation
from seq2seq.generation import Hypothesis, generate
from seq2seq.generation.limits import AT_LIMIT, count_at_limit
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.tasks.seq2seq_evaluation import (
    EvaluationSet,
    Seq2SeqEvaluator,
    decode_sources,
    pad_sources,
)
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from support.toy_models import BOS, EOS, PAD, WORDS, PrefixState, TableToyModel

# Toy words 3, 4, 5. The outputs worth anything: 3 3 3 (0.5), 4 (0.3) and 5 5 (0.2); the
# rest have about 1e-6 per unlisted token, eos forced at the limit among them.
TABLE = {
    (): {3: 0.5, 4: 0.3, 5: 0.2},
    (3,): {3: 1.0},
    (3, 3): {3: 1.0},
    (3, 3, 3): {EOS: 1.0},
    (4,): {EOS: 1.0},
    (5,): {5: 1.0},
    (5, 5): {EOS: 1.0},
}
SETTINGS = GenerationConfig(
    strategy=Strategy.beam,
    beam_size=3,
    nbest=2,
    length_penalty=0.0,  # rank by log-probability, so the table alone orders the lists
    max_len_a=1.0,
    max_len=8,
)
LIMITS = [1, 2, 3, 3, 4]
"""Each example's source length, so its output limit."""
EXPECTED: list[list[tuple[tuple[int, ...], bool]]] = [
    [((4,), True), ((3,), True)],  # both at the limit; 3 3 3 cut to 3
    [((4,), False), ((5, 5), True)],  # only the second
    [((3, 3, 3), True), ((4,), False)],  # only the best
    [((3, 3, 3), True), ((4,), False)],
    [((3, 3, 3), False), ((4,), False)],  # neither
]
"""Per example, its n-best list in toy words: (tokens, at_limit), best first."""
AT_LIMIT_COUNT = sum(nbest[0][1] for nbest in EXPECTED)

# The toy's ids behind the tokenizer's: index a tokenizer id, get the toy's. Unknown never
# comes out (its logit is -inf), so it may borrow pad's toy id.
_TOY_OF = {PAD_ID: PAD, UNK_ID: PAD, BOS_ID: BOS, EOS_ID: EOS}
_WORD_IDS = [i for i in range(len(_TOY_OF) + len(WORDS)) if i not in _TOY_OF]
_TOY_OF.update(zip(_WORD_IDS, WORDS, strict=True))
TOY_OF = torch.tensor([_TOY_OF[i] for i in range(len(_TOY_OF))])


class TokenizerIdsToy:
    """`TableToyModel(TABLE)` in the tokenizer's ids, the ids the seq2seq task decodes
    with, plus the forward pass the evaluator's teacher-forced loss runs (uniform logits:
    the loss is not under test)."""

    def __init__(self) -> None:
        self.toy = TableToyModel(TABLE)
        self.training = False

    def train(self, mode: bool = True) -> TokenizerIdsToy:
        self.training = mode
        return self

    def eval(self) -> TokenizerIdsToy:
        return self.train(False)

    def __call__(self, src: Tensor, src_mask: Tensor, tgt: Tensor, tgt_mask: Tensor) -> Tensor:
        """-> `(B, T, V)` zeros."""
        return torch.zeros(*tgt.shape, len(TOY_OF))

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        return self.toy.encode(src_tokens, src_mask)

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> PrefixState:
        return self.toy.init_state(memory, memory_mask)

    def step(self, tokens: Tensor, state: PrefixState) -> tuple[Tensor, PrefixState]:
        """`tokens: (N,)` tokenizer ids -> logits `(N, V)` over the tokenizer's ids."""
        logits, state = self.toy.step(TOY_OF[tokens], state)
        logits = logits[:, TOY_OF]
        logits[:, UNK_ID] = float("-inf")
        return logits, state


class DigitsTokenizer:
    """What the evaluator reads of a tokenizer: `decode`."""

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def toy_words(hypothesis: Hypothesis) -> tuple[int, ...]:
    return tuple(int(TOY_OF[token]) for token in hypothesis.tokens)


def sources() -> list[list[int]]:
    """One source per example, `LIMITS[i]` tokens long (the toy ignores what they are)."""
    return [[_WORD_IDS[i % len(_WORD_IDS)]] * length for i, length in enumerate(LIMITS)]


def test_the_settings_are_valid() -> None:
    check_generation(SETTINGS, longest=SETTINGS.max_len or 0)


def test_beam_search_returns_the_expected_nbest_lists() -> None:
    """The premise of the counts below: these lists, at_limit marked on each hypothesis."""
    tokens, mask = pad_sources(sources())
    nbests = generate(
        TokenizerIdsToy(), tokens, mask, SETTINGS, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID
    )
    found = [[(toy_words(h), h.at_limit) for h in nbest] for nbest in nbests]
    assert found == EXPECTED
    for nbest, limit in zip(nbests, LIMITS, strict=True):
        assert all(h.at_limit == (len(h.tokens) == limit) for h in nbest)


def test_generate_counts_each_example_once_by_its_best_hypothesis() -> None:
    """seq2seq-generate's warning counts `count_at_limit` of `decode_sources`' lists (the
    language-modeling task's figure and warning count them the same way)."""
    nbests = decode_sources(
        cast(EncoderDecoderTransformer, TokenizerIdsToy()),
        sources(),
        SETTINGS,
        max_tokens=64,
        device=torch.device("cpu"),
        autocast_dtype=None,
    )
    assert [len(nbest) for nbest in nbests] == [SETTINGS.nbest] * len(LIMITS)
    assert count_at_limit(nbests) == AT_LIMIT_COUNT == 3


def test_evaluation_figure_and_warning_count_each_example_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The figure that goes to the validation lines, TensorBoard and metrics.json, and the
    test split's warning line with its total of examples."""
    data = EvaluationSet(
        source_ids=sources(),
        target_ids=[[_WORD_IDS[0]]] * len(LIMITS),
        sources=[f"source {i}" for i in range(len(LIMITS))],
        references=[["reference"]] * len(LIMITS),
    )
    evaluator = Seq2SeqEvaluator(
        model=cast(EncoderDecoderTransformer, TokenizerIdsToy()),
        data=data,
        target_tokenizer=cast(Tokenizer, DigitsTokenizer()),
        generation=SETTINGS,
        metrics=["exact_match"],
        num_samples=0,
        max_tokens=64,
        device=torch.device("cpu"),
        autocast_dtype=None,
        label_smoothing=0.0,
        split="test",
        limit_advice="raise generation.max_len_a",
    )
    with caplog.at_level(logging.WARNING, logger="seq2seq.generate"):
        result = evaluator.evaluate(step=0)

    best = [" ".join(str(_WORD_IDS[WORDS.index(t)]) for t in nbest[0][0]) for nbest in EXPECTED]
    assert result.predictions == best
    assert result.figures[AT_LIMIT] == AT_LIMIT_COUNT == 3
    assert f"3 of {len(LIMITS)} test outputs stopped at the length limit" in caplog.text
