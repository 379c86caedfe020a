"""Schema of the `generation` config node (validation decoding, seq2seq-generate)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationConfig:
    strategy: str = "greedy"
    """`greedy`, `beam` or `sample`."""
    beam_size: int = 5
    """Beam width (`beam`)."""
    nbest: int = 1
    """Hypotheses returned per source (`beam`); at most `beam_size`."""
    length_penalty: float = 0.6
    """alpha of GNMT's length penalty ((5 + len) / 6) ** alpha; 0 ranks by raw log prob."""
    max_len_a: float = 1.5
    """Output length limit a * source_length + b, in tokens (eos not counted) ..."""
    max_len_b: int = 10
    """... and its constant term b; also capped by model.max_len."""
    min_len: int = 1
    """Shortest output; eos is forbidden before it."""
    temperature: float = 1.0
    """Sampling temperature (`sample`)."""
    top_k: int = 0
    """Sample among the k likeliest tokens (0: all)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1: all)."""
    seed: int = 0
    """Seed of the sampling generator."""
