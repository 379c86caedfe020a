"""Toy incremental models with known next-token distributions, for the generation tests.

They implement ``seq2seq.generation.protocol.IncrementalModel`` without any network, so
decoding results can be checked against exhaustive enumeration or hand-computed values.
Vocabulary: pad 0, bos 1, eos 2 and the words 3, 4, 5.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
WORDS = (3, 4, 5)  # the ordinary tokens; every output is a sequence over these
VOCAB_SIZE = 6
SPECIAL = {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD}
"""The special ids as ``generate`` takes them: ``generate(..., **SPECIAL)``."""

_MODULUS = 2_147_483_647
_MULTIPLIER = 1_000_003


class HashState:
    """A running hash of (source, prefix) per row; reorder selects rows like a KV cache."""

    def __init__(self, hashes: Tensor) -> None:
        self.hashes = hashes  # (N,) long

    def reorder(self, index: Tensor) -> HashState:
        return HashState(self.hashes.index_select(0, index))


class HashToyModel:
    """Next-token logits are rows of a fixed random table picked by a hash of source and prefix.

    The distribution therefore depends on the whole source (not its padding) and the
    whole prefix, so a beam that follows the wrong decoder row gets wrong log-probs.
    eos_bias is added to the eos logit: large negative never ends, large positive ends
    at once. Every ``step`` call is counted, and whether it ran under inference mode.
    """

    def __init__(
        self, *, seed: int = 0, table_rows: int = 257, sharpness: float = 1.5, eos_bias: float = 0.0
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(table_rows, VOCAB_SIZE, generator=generator) * sharpness
        self.table[:, EOS] += eos_bias
        self.steps = 0
        self.inference_mode_seen: set[bool] = set()

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        """(B, S) long, (B, S) bool -> memory (B, S, 1): the token ids, padding zeroed."""
        return (src_tokens * src_mask).unsqueeze(-1).float()

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> HashState:
        tokens = memory.squeeze(-1).long()  # (B, S)
        positions = torch.arange(1, tokens.size(1) + 1)
        weighted = (tokens * positions * 13 * memory_mask).sum(1)
        return HashState((weighted + 101 * memory_mask.sum(1)) % _MODULUS)

    def step(self, tokens: Tensor, state: HashState) -> tuple[Tensor, HashState]:
        self.steps += 1
        self.inference_mode_seen.add(torch.is_inference_mode_enabled())
        hashes = (state.hashes * _MULTIPLIER + tokens + 1) % _MODULUS
        return self.table[hashes % self.table.size(0)], HashState(hashes)


class PrefixState:
    """The prefix (tuple of tokens after bos) of every row."""

    def __init__(self, prefixes: list[tuple[int, ...]]) -> None:
        self.prefixes = prefixes

    def reorder(self, index: Tensor) -> PrefixState:
        return PrefixState([self.prefixes[i] for i in index.tolist()])


class TableToyModel:
    """Next-token probabilities given by a dict from prefix to {token: probability}.

    Prefixes missing from the table end almost surely. The source is ignored.
    """

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]]) -> None:
        self.table = table

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        return torch.zeros(*src_tokens.shape, 1)

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> PrefixState:
        return PrefixState([() for _ in range(memory.size(0))])

    def step(self, tokens: Tensor, state: PrefixState) -> tuple[Tensor, PrefixState]:
        prefixes = [
            prefix if token == BOS else (*prefix, token)
            for prefix, token in zip(state.prefixes, tokens.tolist(), strict=True)
        ]
        rows = []
        for prefix in prefixes:
            probs = self.table.get(prefix, {EOS: 1.0})
            # Unlisted tokens get a tiny probability, so every log-prob stays finite.
            rows.append([math.log(probs.get(token, 1e-6)) for token in range(VOCAB_SIZE)])
        return torch.tensor(rows), PrefixState(prefixes)


def sequence_log_prob(
    model: HashToyModel, src_tokens: Tensor, src_mask: Tensor, tokens: tuple[int, ...]
) -> float:
    """log P(tokens, eos | source) by feeding one source row token by token.

    src_tokens, src_mask: (1, S). Independent of the code under test: no batching, no
    reorder, no masking.
    """
    state = model.init_state(model.encode(src_tokens, src_mask), src_mask)
    total = 0.0
    for previous, target in zip((BOS, *tokens), (*tokens, EOS), strict=True):
        logits, state = model.step(torch.tensor([previous]), state)
        total += torch.log_softmax(logits[0].double(), dim=-1)[target].item()
    return total


def all_outputs(min_len: int, max_len: int) -> list[tuple[int, ...]]:
    """Every sequence over WORDS with min_len..max_len tokens."""
    return [
        sequence
        for length in range(min_len, max_len + 1)
        for sequence in itertools.product(WORDS, repeat=length)
    ]


def padded_batch(sources: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad token lists into src_tokens (B, S) long and src_mask (B, S) bool."""
    width = max(len(source) for source in sources)
    src_tokens = torch.full((len(sources), width), PAD, dtype=torch.long)
    src_mask = torch.zeros(len(sources), width, dtype=torch.bool)
    for row, source in enumerate(sources):
        src_tokens[row, : len(source)] = torch.tensor(source, dtype=torch.long)
        src_mask[row, : len(source)] = True
    return src_tokens, src_mask
