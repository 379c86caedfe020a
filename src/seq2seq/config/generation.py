"""Schema of the `generation` config node: how validation, test and seq2seq-generate decode.

One type serves the config and the decoding algorithms (`seq2seq.generation`); its values
are checked once, by `check_generation`, when a config is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from seq2seq.config.choice import Choice


class Strategy(Choice):
    greedy = "greedy"
    beam = "beam"
    sample = "sample"


# floor(a * S + b) must not lose a whole token to binary rounding (0.29 * 100 is
# 28.999999999999996 in floating point), so a tiny tolerance is added before flooring.
_FLOOR_TOLERANCE = 1e-9


@dataclass
class GenerationConfig:
    strategy: Strategy = Strategy.greedy
    """`greedy` (the likeliest token at each step), `beam` (beam search) or `sample`
    (ancestral sampling with temperature, top-k and top-p)."""
    beam_size: int = 5
    """Beams kept per source by beam search (`beam`)."""
    nbest: int = 1
    """Hypotheses returned per source, best first (`beam`); at most `beam_size`."""
    length_penalty: float = 0.6
    """alpha of GNMT's length penalty (Wu et al. 2016), `lp(len) = ((5 + len) / 6) ** alpha`:
    hypotheses are ranked by `log_prob / lp(len)`, len counting the output tokens plus eos.
    0 ranks by raw log-probability (favouring short outputs); larger alphas favour longer
    ones; 0.6 is in the range GNMT found best."""
    max_len_a: float | None = None
    """A relative limit, off by default: an output has at most `floor(max_len_a * S +
    max_len_b)` tokens (eos not counted), S its own source's length without padding, and
    eos is forced at the limit. Setting either turns it on (the other then counts as 0).
    Off, the limit is `max_len`, so no output is cut shorter than a target training keeps
    (a relative limit cut 11.5% of a transliteration task's test references) ..."""
    max_len_b: int | None = None
    """... and its constant term b. Both >= 0, not both 0; also capped by `max_len`."""
    max_len: int | None = None
    """Hard cap on an output's tokens (eos not counted), whatever the source; null: the
    longest the model takes, model.max_len - 1 (the decoder reads bos and the output),
    which is also the longest target training keeps."""
    min_len: int = 1
    """Shortest output; eos is forbidden before it (a per-source limit below it still wins)."""
    max_new_tokens: int = 128
    """language_modeling: the most tokens a continuation adds to its prompt (also capped
    by the positions left after the prompt, model.max_len). seq2seq reads max_len_a/b."""
    temperature: float = 1.0
    """Sampling divides the logits by it (`sample`); below 1 sharpens, above 1 flattens."""
    top_k: int = 0
    """Sample among the k likeliest tokens (`sample`; 0: all)."""
    top_p: float = 1.0
    """Nucleus sampling: the smallest set of likeliest tokens whose mass reaches top_p
    (`sample`; 1: all)."""
    seed: int = 0
    """Seed of the sampling generators (`sample`): the same seed gives the same outputs."""

    @property
    def relative(self) -> bool:
        """Whether the relative limit `floor(max_len_a * S + max_len_b)` is on."""
        return self.max_len_a is not None or self.max_len_b is not None

    def max_lengths(self, source_lengths: Tensor) -> Tensor:
        """Per-example output length limits, eos not counted.

        source_lengths: (B,) real (unpadded) tokens per source, e.g. `src_mask.sum(1)`.
        Returns (B,) long on the same device: `max_len`, or with a relative limit
        `min(floor(a * S + b), max_len)` (a library call with `max_len=None` has no cap
        but a * S + b; the tasks always set one). No limit at all is a ValueError.
        """
        if not self.relative:
            if self.max_len is None:
                raise ValueError(
                    "decoding needs a length limit: set generation.max_len, or "
                    "generation.max_len_a / max_len_b for one relative to the source"
                )
            return torch.full_like(source_lengths, self.max_len, dtype=torch.long)
        a = self.max_len_a or 0.0
        b = self.max_len_b or 0
        limits = torch.floor(a * source_lengths.to(torch.float64) + b + _FLOOR_TOLERANCE)
        if self.max_len is not None:
            limits = limits.clamp(max=self.max_len)
        return limits.to(torch.long)

    def limit_advice(self, *, longest: int) -> str:
        """Which setting to raise for outputs that stopped at their length limit.
        `longest`: the most output tokens the model takes (model.max_len - 1)."""
        cap = longest if self.max_len is None else self.max_len
        if self.relative:
            return (
                f"raise generation.max_len_a={self.max_len_a} / max_len_b={self.max_len_b} "
                "(the limit relative to the source), or remove them to decode up to "
                f"generation.max_len={cap}"
            )
        if cap < longest:
            return f"raise generation.max_len={cap} (the model takes up to {longest})"
        return (
            f"these outputs reached the longest the model takes ({longest} tokens, "
            "model.max_len - 1): a model that does not end its outputs, or targets that "
            "need a larger model.max_len"
        )


# The fields that one strategy alone reads (nbest has its own check).
STRATEGY_FIELDS = {
    "beam_size": Strategy.beam,
    "temperature": Strategy.sample,
    "top_k": Strategy.sample,
    "top_p": Strategy.sample,
    "seed": Strategy.sample,
}
_DEFAULTS = {field.name: field.default for field in fields(GenerationConfig)}


def _fail(name: str, value: object, valid: str) -> None:
    raise ValueError(f"generation.{name}={value!r} is invalid; {valid}")


def check_generation(cfg: GenerationConfig, *, longest: int) -> None:
    """Raise ValueError naming `generation.<field>` for the first invalid value.
    `longest`: the most output tokens the model can take (model.max_len - 1)."""
    for name in ("length_penalty", "max_len_a", "temperature", "top_p"):
        value = getattr(cfg, name)
        if value is not None and not math.isfinite(value):
            _fail(name, value, "it must be a finite number")
    if cfg.beam_size < 1:
        _fail("beam_size", cfg.beam_size, "it must be >= 1")
    if not 1 <= cfg.nbest <= cfg.beam_size:
        _fail("nbest", cfg.nbest, f"it must be between 1 and generation.beam_size={cfg.beam_size}")
    if cfg.nbest > 1 and cfg.strategy != Strategy.beam:
        _fail(
            "nbest",
            cfg.nbest,
            f"generation.strategy={cfg.strategy!r} returns one hypothesis per source; "
            "use strategy='beam' for an n-best list",
        )
    if cfg.max_len_a is not None and cfg.max_len_a < 0:
        _fail("max_len_a", cfg.max_len_a, "it must be >= 0")
    if cfg.max_len_b is not None and cfg.max_len_b < 0:
        _fail("max_len_b", cfg.max_len_b, "it must be >= 0")
    if cfg.relative and not cfg.max_len_a and not cfg.max_len_b:
        _fail(
            "max_len_b",
            cfg.max_len_b,
            f"with generation.max_len_a={cfg.max_len_a} no output token would be allowed; "
            "set max_len_b >= 1, or neither to decode up to generation.max_len",
        )
    if cfg.max_len is not None and not 1 <= cfg.max_len <= longest:
        _fail(
            "max_len",
            cfg.max_len,
            f"it must be between 1 and model.max_len - 1 = {longest} (or null for that)",
        )
    cap = longest if cfg.max_len is None else cfg.max_len
    if not 0 <= cfg.min_len <= cap:
        where = "model.max_len - 1" if cfg.max_len is None else "generation.max_len"
        _fail("min_len", cfg.min_len, f"it must be between 0 and {where} = {cap}")
    if cfg.temperature <= 0:
        _fail("temperature", cfg.temperature, "it must be > 0 (use strategy='greedy' for argmax)")
    if cfg.top_k < 0:
        _fail("top_k", cfg.top_k, "it must be >= 0 (0 disables top-k filtering)")
    if not 0 < cfg.top_p <= 1:
        _fail("top_p", cfg.top_p, "it must be in (0, 1] (1 disables nucleus filtering)")
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "it must be >= 0")
    if cfg.max_new_tokens < 1:
        _fail("max_new_tokens", cfg.max_new_tokens, "it must be >= 1")
    for name, strategy in STRATEGY_FIELDS.items():
        value, default = getattr(cfg, name), _DEFAULTS[name]
        if cfg.strategy != strategy and value != default:
            _fail(
                name,
                value,
                f"only strategy={strategy!r} reads it, but generation.strategy="
                f"{cfg.strategy!r}; remove it or set it back to {default!r}",
            )
