"""Token embeddings (scaled by sqrt(D)) and positions (`learned`, `sinusoidal` or `rotary`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenEmbedding(nn.Embedding):
    """`tokens: (B, L) -> (B, L, D)`, scaled by sqrt(D) with N(0, 1/D) init, so the
    scaled vectors have unit variance and a tied output projection starts well scaled."""

    def __init__(self, vocab_size: int, d_model: int, *, pad_id: int) -> None:
        super().__init__(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.weight[pad_id].zero_()
        self.scale = math.sqrt(d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        return super().forward(tokens) * self.scale


class Positions(nn.Module):
    """`forward(x, offset)`: the embeddings `x: (B, L, D)` of positions offset..offset+L-1
    with their positions added, `(B, L, D)`."""

    max_len: int

    def _check(self, length: int, offset: int) -> None:
        if offset + length > self.max_len:
            raise ValueError(
                f"a sequence reaches position {offset + length} but model.max_len={self.max_len}; "
                "raise model.max_len or lower data.max_source_len / data.max_target_len"
            )

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        raise NotImplementedError


class LearnedPositions(Positions):
    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        self._check(length, offset)
        return x + self.embedding.weight[offset : offset + length]


class SinusoidalPositions(Positions):
    """Fixed sin/cos positions of Vaswani et al. (2017)."""

    table: Tensor

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        frequency = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
        )
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        self._check(length, offset)
        return x + self.table[offset : offset + length]


class RotaryPositions(Positions):
    """Adds nothing: rotary positions turn the queries and keys of self-attention instead
    (`attention/rotary.py`, built by build.py). Sequences stay within `max_len`, as with
    the other kinds, so every position choice accepts the same data."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        self._check(x.shape[1], offset)
        return x


POSITIONS: dict[str, type[Positions]] = {
    "learned": LearnedPositions,
    "sinusoidal": SinusoidalPositions,
    "rotary": RotaryPositions,
}


def make_positions(name: str, *, max_len: int, d_model: int) -> Positions:
    if name not in POSITIONS:
        raise ValueError(f"model.position={name!r} is unknown; choose one of {sorted(POSITIONS)}")
    return POSITIONS[name](max_len, d_model)
