"""Residual schemes: how each sublayer (attention, cross-attention, feed-forward) is wrapped.

A scheme splits the wrapper into `pre(x)` (what the sublayer sees) and `post(x, y)` (how its
output `y` rejoins the stream), so full passes and one-token decoding steps share one path:
- `layernorm`, pre: `x + f(LN(x))`, with a final LayerNorm on the stack;
- `layernorm`, post: `LN(x + f(x))`, no final norm;
- `rmsnorm`, pre or post: the same with RMSNorm in place of LayerNorm;
- `rezero`: `x + alpha * f(x)`, alpha a scalar initialised to 0, no norm at all;
- `prescalenorm`: `x + f(g * x / ||x||)`, g initialised to sqrt(D), with a final ScaleNorm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.model.dropout import Dropout


class ScaleNorm(nn.Module):
    """`g * x / ||x||` over the last dim, one learned scalar g (Nguyen & Salazar, 2019)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(math.sqrt(d_model)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x / x.norm(dim=-1, keepdim=True).clamp(min=self.eps)


class RMSNorm(nn.Module):
    """`g * x / sqrt(mean(x^2) + eps)` over the last dim, g a learned vector initialised to 1
    (Zhang & Sennrich, 2019): LayerNorm without the mean and the bias."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """`x: (..., D) -> (..., D)`."""
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


NormFactory = Callable[[int], nn.Module]
"""`d_model -> norm module`: LayerNorm or RMSNorm."""


class Residual(nn.Module):
    """`forward(x, f) = post(x, f(pre(x)))`; `x: (B, L, D)`."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)

    def pre(self, x: Tensor) -> Tensor:
        return x

    def post(self, x: Tensor, y: Tensor) -> Tensor:
        return x + self.dropout(y)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        return self.post(x, sublayer(self.pre(x)))


class PreNormResidual(Residual):
    def __init__(self, d_model: int, dropout: float, norm: NormFactory = nn.LayerNorm) -> None:
        super().__init__(dropout)
        self.norm = norm(d_model)

    def pre(self, x: Tensor) -> Tensor:
        return self.norm(x)


class PostNormResidual(Residual):
    def __init__(self, d_model: int, dropout: float, norm: NormFactory = nn.LayerNorm) -> None:
        super().__init__(dropout)
        self.norm = norm(d_model)

    def post(self, x: Tensor, y: Tensor) -> Tensor:
        return self.norm(x + self.dropout(y))


class ReZeroResidual(Residual):
    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__(dropout)
        self.alpha = nn.Parameter(torch.zeros(()))

    def post(self, x: Tensor, y: Tensor) -> Tensor:
        return x + self.alpha * self.dropout(y)


class PreScaleNormResidual(Residual):
    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__(dropout)
        self.norm = ScaleNorm(d_model)

    def pre(self, x: Tensor) -> Tensor:
        return self.norm(x)


ResidualFactory = Callable[[], Residual]


@dataclass(frozen=True)
class NormScheme:
    """A residual wrapper for each sublayer and the norm that ends the stack."""

    residual: Callable[[int, float], Residual]
    final_norm: Callable[[int], nn.Module]


NORMS: dict[str, dict[str, NormScheme]] = {
    "layernorm": {
        "pre": NormScheme(PreNormResidual, nn.LayerNorm),
        "post": NormScheme(PostNormResidual, lambda d_model: nn.Identity()),
    },
    "rmsnorm": {
        "pre": NormScheme(partial(PreNormResidual, norm=RMSNorm), RMSNorm),
        "post": NormScheme(partial(PostNormResidual, norm=RMSNorm), lambda d_model: nn.Identity()),
    },
    "rezero": {"pre": NormScheme(ReZeroResidual, lambda d_model: nn.Identity())},
    "prescalenorm": {"pre": NormScheme(PreScaleNormResidual, ScaleNorm)},
}


def norm_scheme(name: str, position: str) -> NormScheme:
    if name not in NORMS:
        raise ValueError(f"model.norm={name!r} is unknown; choose one of {sorted(NORMS)}")
    positions = NORMS[name]
    if position not in positions:
        valid = sorted(positions)
        raise ValueError(
            f"model.norm_position={position!r} is not available with model.norm={name!r}; "
            f"choose one of {valid}"
        )
    return positions[position]
