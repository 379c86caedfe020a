"""The `generation` settings: each bad value is one error naming the field, checked once
by `check_generation` against the model's longest output; and the per-source length limits
that decoding derives from them."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from seq2seq.config.generation import GenerationConfig, check_generation

LONGEST = 20
"""The model's longest output in these tests (model.max_len - 1)."""


def test_defaults_decode_greedily_with_the_documented_limits() -> None:
    """The defaults pass and mean what their docs say: greedy search, GNMT alpha 0.6, no
    limit relative to the source, so every output may reach the cap (max_len, which the
    tasks fill with the longest target training keeps), at least one token."""
    settings = GenerationConfig()
    check_generation(settings, longest=LONGEST)
    assert settings.strategy == "greedy" and settings.nbest == 1
    assert settings.length_penalty == 0.6 and settings.min_len == 1
    assert settings.max_len is None and not settings.relative
    with pytest.raises(ValueError, match=r"decoding needs a length limit: set generation\.max_len"):
        settings.max_lengths(torch.tensor([4]))
    capped = GenerationConfig(max_len=LONGEST)
    assert capped.max_lengths(torch.tensor([0, 1, 4, 400])).tolist() == [LONGEST] * 4


def test_the_old_relative_default_cut_what_training_keeps() -> None:
    """The issue's case: four source characters, a pinyin target of 22. floor(1.5 * 4 + 10)
    = 16 cut it; the default lets it through."""
    source, target = torch.tensor([4]), 22
    assert GenerationConfig(max_len_a=1.5, max_len_b=10).max_lengths(source).item() < target
    assert GenerationConfig(max_len=127).max_lengths(source).item() >= target


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({"max_len_a": 2.0}, [0, 2, 8, LONGEST]), ({"max_len_b": 3}, [3, 3, 3, 3])],
    ids=["a-alone", "b-alone"],
)
def test_either_relative_setting_alone_turns_the_relative_limit_on(
    fields: dict[str, Any], expected: list[int]
) -> None:
    """The other one counts as 0; the cap still applies."""
    settings = GenerationConfig(max_len=LONGEST, **fields)
    assert settings.relative
    assert settings.max_lengths(torch.tensor([0, 1, 4, 100])).tolist() == expected


@pytest.mark.parametrize(
    ("fields", "advice"),
    [
        ({}, r"reached the longest the model takes \(20 tokens, model\.max_len - 1\)"),
        ({"max_len": 12}, r"raise generation\.max_len=12 \(the model takes up to 20\)"),
        ({"max_len_a": 1.5, "max_len_b": 10}, r"raise generation\.max_len_a=1\.5 / max_len_b=10"),
    ],
    ids=["model-cap", "max_len", "relative"],
)
def test_the_advice_names_the_setting_that_cut_the_outputs(
    fields: dict[str, Any], advice: str
) -> None:
    assert re.search(advice, GenerationConfig(**fields).limit_advice(longest=LONGEST))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"beam_size": 0}, r"generation.beam_size=0 .*>= 1"),
        ({"strategy": "beam", "beam_size": 3, "nbest": 4}, r"generation.nbest=4 .*beam_size=3"),
        ({"nbest": 0}, r"generation.nbest=0 "),
        ({"strategy": "greedy", "nbest": 2}, r"generation.nbest=2 .*strategy='beam'"),
        ({"length_penalty": float("nan")}, r"generation.length_penalty=nan .*finite"),
        ({"max_len_a": -0.5}, r"generation.max_len_a=-0.5 .*>= 0"),
        ({"max_len_b": -1}, r"generation.max_len_b=-1 .*>= 0"),
        ({"max_len_a": 0.0, "max_len_b": 0}, r"generation.max_len_b=0 .*max_len_a=0"),
        ({"max_len_a": 0.0}, r"generation.max_len_b=None .*max_len_a=0.0.*or neither"),
        ({"max_len": 0}, r"generation.max_len=0 .*between 1 and model.max_len - 1 = 20"),
        ({"max_len": 21}, r"generation.max_len=21 .*between 1 and model.max_len - 1 = 20"),
        ({"min_len": -1}, r"generation.min_len=-1 .*between 0 and model.max_len - 1 = 20"),
        ({"min_len": 21}, r"generation.min_len=21 .*between 0 and model.max_len - 1 = 20"),
        ({"max_len": 5, "min_len": 6}, r"generation.min_len=6 .*generation.max_len = 5"),
        ({"strategy": "sample", "temperature": 0.0}, r"generation.temperature=0.0 .*> 0"),
        ({"strategy": "sample", "top_k": -1}, r"generation.top_k=-1 .*>= 0"),
        ({"strategy": "sample", "top_p": 0.0}, r"generation.top_p=0.0 .*\(0, 1\]"),
        ({"strategy": "sample", "top_p": 1.5}, r"generation.top_p=1.5 .*\(0, 1\]"),
        ({"strategy": "sample", "seed": -3}, r"generation.seed=-3 .*>= 0"),
        ({"strategy": "greedy", "beam_size": 3}, r"generation.beam_size=3 .*only strategy='beam'"),
        ({"strategy": "beam", "top_p": 0.9}, r"generation.top_p=0.9 .*only strategy='sample'"),
    ],
)
def test_invalid_settings_name_field_value_and_what_is_valid(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_generation(GenerationConfig(**fields), longest=LONGEST)


def test_max_lengths_follow_each_source_and_the_hard_cap() -> None:
    settings = GenerationConfig(max_len_a=1.5, max_len_b=2, max_len=10)
    lengths = torch.tensor([0, 1, 2, 4, 7, 100])
    # floor(1.5 * S + 2), capped at 10.
    assert settings.max_lengths(lengths).tolist() == [2, 3, 5, 8, 10, 10]


def test_max_lengths_without_a_cap_follow_the_source_alone() -> None:
    settings = GenerationConfig(max_len_a=2.0, max_len_b=1)
    assert settings.max_lengths(torch.tensor([1, 50])).tolist() == [3, 101]


def test_max_lengths_do_not_lose_a_token_to_binary_rounding() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point.
    settings = GenerationConfig(max_len_a=0.29, max_len_b=0)
    assert settings.max_lengths(torch.tensor([100])).tolist() == [29]
