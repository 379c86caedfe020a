"""What the gated kinds (`gated_linear`, `delta`) share: the per-head forget gate in log
space, the per-head output norm that replaces the linear kinds' normalizer, and the
masking of padded positions.

Forget gates (`model.linear.gate`):
- `data`: Mamba-2's data-dependent scalar per head and position,
  `log a_t = -softplus(w . x_t + b_h) * exp(A_h)`, with `w . x_t` projected by the
  multi-head module (`raw`), `b_h` (dt bias) and `A_h` learned per head, initialised as
  Mamba-2 does (A in [1, 16], dt in [1e-3, 0.1]);
- `fixed`: RetNet's per-head constant decay `a_h = 1 - 2^(-5 - h)`, h = 0..H-1;
- `none`: no decay (`a = 1`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GateKind = Literal["data", "fixed", "none"]
GATES: tuple[GateKind, ...] = ("data", "fixed", "none")


class ForgetGate(nn.Module):
    """Per-head log decays `(B, H, L)` (float32, `<= 0`) from the raw projections."""

    def __init__(self, heads: int, kind: GateKind) -> None:
        super().__init__()
        assert kind in GATES, kind
        self.kind = kind
        self.heads = heads
        if kind == "data":
            # Mamba-2: A = -exp(A_log), A_log = log(U[1, 16]); dt = softplus(raw + dt_bias)
            # with dt_bias the inverse softplus of a log-uniform draw in [1e-3, 0.1].
            a = torch.linspace(1.0, 16.0, heads)
            dt = torch.exp(torch.linspace(math.log(1e-3), math.log(0.1), heads))
            self.a_log = nn.Parameter(a.log())
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        elif kind == "fixed":
            exponents = -5.0 - torch.arange(heads, dtype=torch.float32)
            self.register_buffer("log_decay", torch.log1p(-torch.pow(2.0, exponents)))

    @property
    def reads_input(self) -> bool:
        """Whether the gate reads a projection of the layer input."""
        return self.kind == "data"

    def forward(self, raw: Tensor | None, like: Tensor) -> Tensor:
        """`raw: (B, H, L)` (the `data` gate's projection; None otherwise), `like: (B, H, L,
        Dh)` for the shape -> float32 log decays `(B, H, L)`."""
        batch, heads, length, _ = like.shape
        if self.kind == "data":
            assert raw is not None
            dt = F.softplus(raw.float() + self.dt_bias.float()[:, None])
            return -dt * self.a_log.float().exp()[:, None]
        if self.kind == "fixed":
            return self.get_buffer("log_decay").float()[None, :, None].expand(batch, heads, length)
        return like.new_zeros(batch, heads, length, dtype=torch.float32)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, heads={self.heads}"


class HeadNorm(nn.Module):
    """RMS norm of each head's output over its width, with one learned scale shared by the
    heads (as GLA, RetNet and Gated DeltaNet do in place of a normalizer)."""

    def __init__(self, head_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(head_dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """`x: (B, H, L, Dh)` -> the same shape and dtype."""
        normed = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return normed.to(x.dtype)


def masked_inputs(
    key_padding_mask: Tensor | None, k: Tensor, v: Tensor, *scalars: Tensor
) -> tuple[Tensor, ...]:
    """Padded positions (False in `key_padding_mask: (B, L)`) write nothing and decay
    nothing: `k, v: (B, H, L, D)` zeroed there and every per-position scalar `(B, H, L)`
    (log decays, write strengths) set to 0."""
    if key_padding_mask is None:
        return (k, v, *scalars)
    keep = key_padding_mask[:, None, :]
    return (
        k * keep[..., None].to(k.dtype),
        v * keep[..., None].to(v.dtype),
        *(scalar * keep.to(scalar.dtype) for scalar in scalars),
    )
