"""GenerationSettings validation and per-example max lengths."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation import GenerationSettings


def test_defaults_decode_greedily_with_the_documented_limits() -> None:
    """The defaults validate and mean what the docstring says: greedy search, GNMT alpha
    0.6, at most floor(1.5 S + 10) tokens capped at 512, at least one token."""
    settings = GenerationSettings()
    assert settings.strategy == "greedy" and settings.nbest == 1
    assert settings.length_penalty == 0.6
    assert settings.max_lengths(torch.tensor([0, 4, 7, 400])).tolist() == [10, 16, 20, 512]
    assert settings.min_len == 1


def test_the_config_schema_and_the_settings_hold_the_same_fields_and_defaults() -> None:
    """`generation` (the Hydra schema) and GenerationSettings (the validated value, with the
    model's `max_len` added) are two dataclasses; a field added to one only would be lost
    or unreachable from the command line."""
    schema = {field.name: field.default for field in dataclasses.fields(GenerationConfig)}
    settings = {field.name: field.default for field in dataclasses.fields(GenerationSettings)}
    settings.pop("max_len")
    assert schema == settings


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"strategy": "nucleus"}, r"generation.strategy='nucleus' .*greedy, beam, sample"),
        ({"beam_size": 0}, r"generation.beam_size=0 .*>= 1"),
        ({"beam_size": 2.5}, r"generation.beam_size=2.5 .*integer"),
        ({"beam_size": True}, r"generation.beam_size=True .*integer"),
        ({"beam_size": 3, "nbest": 4}, r"generation.nbest=4 .*generation.beam_size=3"),
        ({"nbest": 0}, r"generation.nbest=0 "),
        ({"strategy": "greedy", "nbest": 2}, r"generation.nbest=2 .*strategy='beam'"),
        ({"length_penalty": float("nan")}, r"generation.length_penalty=nan .*finite"),
        ({"max_len_a": -0.5}, r"generation.max_len_a=-0.5 .*>= 0"),
        ({"max_len_b": -1}, r"generation.max_len_b=-1 .*>= 0"),
        ({"max_len_a": 0.0, "max_len_b": 0}, r"generation.max_len_b=0 .*max_len_a=0"),
        ({"max_len": 0}, r"generation.max_len=0 .*>= 1"),
        ({"min_len": -1}, r"generation.min_len=-1 .*between 0 and generation.max_len"),
        ({"max_len": 5, "min_len": 6}, r"generation.min_len=6 .*generation.max_len=5"),
        ({"temperature": 0.0}, r"generation.temperature=0.0 .*> 0"),
        ({"temperature": "hot"}, r"generation.temperature='hot' .*finite number"),
        ({"top_k": -1}, r"generation.top_k=-1 .*>= 0"),
        ({"top_p": 0.0}, r"generation.top_p=0.0 .*\(0, 1\]"),
        ({"top_p": 1.5}, r"generation.top_p=1.5 .*\(0, 1\]"),
        ({"seed": -3}, r"generation.seed=-3 .*>= 0"),
    ],
)
def test_invalid_settings_name_field_value_and_what_is_valid(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationSettings(**fields)


def test_max_lengths_follow_each_source_and_the_hard_cap() -> None:
    settings = GenerationSettings(max_len_a=1.5, max_len_b=2, max_len=10)
    lengths = torch.tensor([0, 1, 2, 4, 7, 100])
    # floor(1.5 * S + 2), capped at 10.
    assert settings.max_lengths(lengths).tolist() == [2, 3, 5, 8, 10, 10]


def test_max_lengths_do_not_lose_a_token_to_binary_rounding() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point.
    settings = GenerationSettings(max_len_a=0.29, max_len_b=0)
    assert settings.max_lengths(torch.tensor([100])).tolist() == [29]
