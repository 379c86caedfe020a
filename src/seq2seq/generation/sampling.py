"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.protocol import IncrementalModel
from seq2seq.generation.single_path import decode_single_path


def sample_sequences(
    model: IncrementalModel,
    src_tokens: Tensor,
    src_mask: Tensor,
    settings: GenerationConfig,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    source_ids: Sequence[int] | None = None,
) -> list[list[Hypothesis]]:
    """Decode each source by sampling every token from the filtered distribution.

    src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
    Returns B lists holding one Hypothesis each. Row i draws from its own generator,
    seeded by ``settings.seed`` and ``source_ids[i]`` (default i): the same seed, source
    index and device give the same sample, whatever else is in the batch, and repeated
    sources at different indices get independent samples. The reported log_prob is under
    the model itself (temperature 1, unfiltered).
    """
    rows = range(src_tokens.size(0)) if source_ids is None else source_ids
    generators = [row_generator(settings.seed, row, src_tokens.device) for row in rows]

    def choose(logits: Tensor) -> Tensor:
        logits = logits / settings.temperature
        logits = top_k_filter(logits, settings.top_k)
        logits = top_p_filter(logits, settings.top_p)
        probs = torch.softmax(logits, dim=-1)
        return torch.cat(
            [
                torch.multinomial(row, num_samples=1, generator=generator)
                for row, generator in zip(probs, generators, strict=True)
            ]
        )

    return decode_single_path(
        model,
        src_tokens,
        src_mask,
        settings,
        choose=choose,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
    )


def row_generator(seed: int, source_id: int, device: torch.device) -> torch.Generator:
    """The generator of one source's draws: a distinct stream per (seed, source_id)."""
    generator = torch.Generator(device=device)
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return generator


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row, set the others to -inf; k = 0 keeps all.

    logits: (N, V) -> (N, V). Ties with the k-th value are kept.
    """
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth_largest = logits.topk(k, dim=-1).values[:, -1:]  # (N, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches p (nucleus).

    logits: (N, V) -> (N, V), dropped tokens at -inf; p = 1 keeps all. The most likely
    token is always kept, so a tiny p gives greedy decoding.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (N, V)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    # A token is dropped when the tokens ranked above it already reach p.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
