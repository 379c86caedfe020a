"""GenerationSettings: how to decode, validated once on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NoReturn

import torch
from torch import Tensor

# Kept here rather than read from generate.STRATEGIES so that settings can be checked
# without importing the strategies; a test keeps the two in step.
STRATEGY_NAMES: tuple[str, ...] = ("greedy", "beam", "sample")

# floor(a * S + b) must not lose a whole token to binary rounding (0.29 * 100 is
# 28.999999999999996 in floating point), so a tiny tolerance is added before flooring.
_FLOOR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; an invalid value raises ValueError naming ``generation.<field>``.

    strategy: "greedy" (most likely token at each step), "beam" (beam search) or
        "sample" (ancestral sampling with temperature, top-k and top-p).
    beam_size: beams kept per source by beam search, >= 1.
    nbest: hypotheses returned per source by beam search, best first, 1..beam_size.
        Greedy and sampling return one, so nbest > 1 needs strategy="beam".
    length_penalty: alpha of GNMT's length penalty (Wu et al. 2016),
        ``lp(len) = ((5 + len) / 6) ** alpha``; hypotheses are ranked by
        ``score = log_prob / lp(len)`` where len counts the output tokens plus eos (the
        number of log-probabilities summed). 0 ranks by raw log-probability, which
        favours short outputs; larger alphas favour longer ones. The default 0.6 is in
        the range GNMT found best.
    max_len_a, max_len_b: an output has at most ``floor(max_len_a * S + max_len_b)``
        tokens (eos not counted), S being its own source's length without padding.
        Both >= 0 and not both 0. When the limit is reached, eos is forced.
    max_len: hard cap on the output length (eos not counted), whatever the source, >= 1.
        Decoding feeds bos plus up to max_len tokens, i.e. max_len + 1 decoder
        positions, so a model with P learned positions needs max_len <= P - 1.
    min_len: eos is forbidden until the output has this many tokens, 0..max_len; a
        per-example limit from max_len_a/b below min_len still wins (eos is forced).
    temperature: sampling divides the logits by it, > 0; below 1 sharpens the
        distribution, above 1 flattens it.
    top_k: sampling keeps only the k most likely tokens; 0 keeps all.
    top_p: nucleus sampling keeps the smallest set of most likely tokens whose
        probability reaches top_p, in (0, 1]; 1 keeps all.
    seed: seeds the torch.Generator of sampling, so the same seed gives the same output.
    """

    strategy: str = "greedy"
    beam_size: int = 5
    nbest: int = 1
    length_penalty: float = 0.6
    max_len_a: float = 1.5
    max_len_b: int = 10
    max_len: int = 512
    min_len: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGY_NAMES:
            _fail("strategy", self.strategy, f"valid strategies: {', '.join(STRATEGY_NAMES)}")
        for name in ("beam_size", "nbest", "max_len_b", "max_len", "min_len", "top_k", "seed"):
            if not _is_int(getattr(self, name)):
                _fail(name, getattr(self, name), "it must be an integer")
        for name in ("length_penalty", "max_len_a", "temperature", "top_p"):
            if not _is_finite_number(getattr(self, name)):
                _fail(name, getattr(self, name), "it must be a finite number")
        if self.beam_size < 1:
            _fail("beam_size", self.beam_size, "it must be >= 1")
        if not 1 <= self.nbest <= self.beam_size:
            _fail(
                "nbest",
                self.nbest,
                f"it must be between 1 and generation.beam_size={self.beam_size}",
            )
        if self.nbest > 1 and self.strategy != "beam":
            _fail(
                "nbest",
                self.nbest,
                f"generation.strategy={self.strategy!r} returns one hypothesis per source; "
                "use strategy='beam' for an n-best list",
            )
        if self.max_len_a < 0:
            _fail("max_len_a", self.max_len_a, "it must be >= 0")
        if self.max_len_b < 0:
            _fail("max_len_b", self.max_len_b, "it must be >= 0")
        if self.max_len_a == 0 and self.max_len_b == 0:
            _fail(
                "max_len_b",
                self.max_len_b,
                "with generation.max_len_a=0 no output token would be allowed; set max_len_b >= 1",
            )
        if self.max_len < 1:
            _fail("max_len", self.max_len, "it must be >= 1")
        if not 0 <= self.min_len <= self.max_len:
            _fail(
                "min_len",
                self.min_len,
                f"it must be between 0 and generation.max_len={self.max_len}",
            )
        if self.temperature <= 0:
            _fail(
                "temperature", self.temperature, "it must be > 0 (use strategy='greedy' for argmax)"
            )
        if self.top_k < 0:
            _fail("top_k", self.top_k, "it must be >= 0 (0 disables top-k filtering)")
        if not 0 < self.top_p <= 1:
            _fail("top_p", self.top_p, "it must be in (0, 1] (1 disables nucleus filtering)")
        if self.seed < 0:
            _fail("seed", self.seed, "it must be >= 0")
        self._check_strategy_fields()

    def _check_strategy_fields(self) -> None:
        """A field only another strategy reads, set away from its default, would be
        silently ignored: it is an error instead."""
        for name, strategy in STRATEGY_FIELDS.items():
            value = getattr(self, name)
            default = _DEFAULTS[name]
            if self.strategy != strategy and value != default:
                _fail(
                    name,
                    value,
                    f"only strategy={strategy!r} reads it, but generation.strategy="
                    f"{self.strategy!r}; remove it or set it back to {default!r}",
                )

    def max_lengths(self, source_lengths: Tensor) -> Tensor:
        """Per-example output length limits, eos not counted.

        source_lengths: (B,) real (unpadded) tokens per source, e.g. ``src_mask.sum(1)``.
        Returns (B,) long on the same device: ``min(floor(a * S + b), max_len)``.
        """
        limits = torch.floor(
            self.max_len_a * source_lengths.to(torch.float64) + self.max_len_b + _FLOOR_TOLERANCE
        )
        return limits.clamp(max=self.max_len).to(torch.long)


def _is_int(value: object) -> bool:
    # bool is an int subclass, but beam_size=True is a configuration mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _fail(field: str, value: object, valid: str) -> NoReturn:
    raise ValueError(f"generation.{field}={value!r} is invalid; {valid}")


# The fields that one strategy alone reads (nbest has its own check above).
STRATEGY_FIELDS = {
    "beam_size": "beam",
    "temperature": "sample",
    "top_k": "sample",
    "top_p": "sample",
    "seed": "sample",
}
_DEFAULTS = {field.name: field.default for field in fields(GenerationSettings)}
