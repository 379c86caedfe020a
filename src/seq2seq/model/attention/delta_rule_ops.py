"""The (gated) delta rule: a linear-attention state that is corrected, not only added to.

Per batch row and head, with a state `S_t: (Dk, Dv)` and `S_0 = 0`:

    S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T q_t

with `a_t = exp(g_t)` for the log decay `g_t <= 0` (Gated DeltaNet, Yang et al. 2024,
arXiv 2412.06464; no gate, `a_t = 1`, is DeltaNet) and the write strength `beta_t` in (0, 1).
The callers L2-normalise q and k; nothing here does, and there is no normaliser.

Training uses the chunked form (Yang et al. 2024, "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length"). Inside a chunk, with `G_r` the in-chunk cumulative sum of
the log decay and `S_0` the state entering the chunk, induction on r gives

    S_r = e^{G_r} S_0 + sum_{i <= r} e^{G_r - G_i} k_i u_i^T,
    u_r = beta_r (v_r - e^{G_r} S_0^T k_r - sum_{i < r} e^{G_r - G_i} (k_r . k_i) u_i),

a unit lower triangular system `(I + A) u = beta v - beta e^G K S_0` with
`A = tril(diag(beta) (K K^T * e^{G_r - G_i}), -1)`. Its solution is `u = U - W S_0` for
`U = T diag(beta) V` and `W = T diag(beta e^G) K`, `T = (I + A)^{-1}` (the WY / UT form):
U and W depend on the chunk alone, so they come from one batched triangular solve for all
chunks at once. The state's dependence on the previous chunk is a matrix, not a scalar, so
the chunks are then scanned in a Python loop of a few matmuls each:

    u = U - W S,    out = (Q * e^G) S + tril(Q K^T * e^{G_r - G_i}) u,
    S <- e^{G_C} S + (K * e^{G_C - G})^T u.

Decoding runs the recurrence one token at a time in constant time and memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import compute_dtype, float32_region


def _check_shapes(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None) -> None:
    """q, k: (B, H, L, Dk); v: (B, H, L, Dv); beta, log_decay: (B, H, L)."""
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(
            f"q and k must both be (B, H, L, Dk); got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be (B, H, L, Dv) with q's (B, H, L); got {tuple(v.shape)}")
    for name, gate in (("beta", beta), ("log_decay", log_decay)):
        if gate is not None and gate.shape != q.shape[:3]:
            raise ValueError(
                f"{name} must be (B, H, L) = {tuple(q.shape[:3])}; got {tuple(gate.shape)}"
            )


def delta_rule_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    log_decay: Tensor | None,
    *,
    chunk_size: int = 64,
) -> Tensor:
    """Causal (gated) delta-rule attention over a whole sequence, chunk by chunk.

    q, k: (B, H, L, Dk), L2-normalised by the caller; v: (B, H, L, Dv);
    beta: (B, H, L) in (0, 1); log_decay: (B, H, L) <= 0, or None for no gate.
    Returns (B, H, L, Dv) in v's dtype. The arithmetic is float32 (float64 for float64
    inputs) whatever the inputs' dtype and the autocast state.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    _check_shapes(q, k, v, beta, log_decay)
    batch, heads, length, dk = q.shape
    dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, beta, log_decay)
    # A sequence shorter than a chunk needs no padding up to a whole chunk.
    c = min(chunk_size, length)
    pad = -length % c
    n = (length + pad) // c

    with float32_region(q.device):
        # Padded positions have k = v = 0, beta = 0 and no decay: they write nothing, erase
        # nothing and sit after every real position, so they change no real output.
        qc = F.pad(q.to(dtype), (0, 0, 0, pad)).reshape(batch, heads, n, c, dk)
        kc = F.pad(k.to(dtype), (0, 0, 0, pad)).reshape(batch, heads, n, c, dk)
        vc = F.pad(v.to(dtype), (0, 0, 0, pad)).reshape(batch, heads, n, c, dv)
        bc = F.pad(beta.to(dtype), (0, pad)).reshape(batch, heads, n, c, 1)

        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        kk = kc @ kc.transpose(-1, -2)  # (B, H, N, C, C)
        qk = qc @ kc.transpose(-1, -2)  # (B, H, N, C, C)
        k_beta = bc * kc  # (B, H, N, C, Dk)
        if log_decay is None:
            q_scaled, k_to_end, chunk_decay = qc, kc, None
        else:
            g = F.pad(log_decay.to(dtype), (0, pad)).reshape(batch, heads, n, c)
            cum = g.cumsum(-1)  # (B, H, N, C): G_r, in-chunk, never positive
            # G_r - G_i summed directly as sum_{i < s <= r} g_s rather than subtracted: after a
            # strong decay both cumulative sums are large (-30 x 32 = -960) and their float32
            # difference loses ~1e-4 of a ratio near 1. Above the diagonal, -inf: exp only of
            # sums <= 0, never of the large positive numbers strong decay would give there.
            segment = g[..., :, None].expand(*g.shape, c).tril(-1).cumsum(-2)
            ratio = segment.masked_fill(~causal, -torch.inf).exp()  # (B, H, N, C, C)
            kk = kk * ratio
            qk = qk * ratio
            q_scaled = qc * cum[..., None].exp()
            k_beta = k_beta * cum[..., None].exp()
            k_to_end = kc * ratio[..., -1, :, None]  # e^{G_C - G_i}
            chunk_decay = cum[..., -1, None, None].exp()  # (B, H, N, 1, 1)
        eye = torch.eye(c, dtype=dtype, device=q.device)
        a = (bc * kk).tril(-1)
        # One solve gives W = T diag(beta e^G) K and U = T diag(beta) V together; solving is
        # also more accurate than forming T and multiplying.
        wu = torch.linalg.solve_triangular(
            eye + a, torch.cat([k_beta, bc * vc], dim=-1), upper=False, unitriangular=True
        )
        w, u = wu.split([dk, dv], dim=-1)  # (B, H, N, C, Dk), (B, H, N, C, Dv)
        qk = qk.masked_fill(~causal, 0.0)

        state = q.new_zeros(batch, heads, dk, dv, dtype=dtype)
        outs = []
        for i in range(n):
            new = u[:, :, i] - w[:, :, i] @ state  # (B, H, C, Dv)
            outs.append(q_scaled[:, :, i] @ state + qk[:, :, i] @ new)
            if chunk_decay is not None:
                state = chunk_decay[:, :, i] * state
            state = state + k_to_end[:, :, i].transpose(-1, -2) @ new
        out = torch.stack(outs, dim=2).reshape(batch, heads, n * c, dv)
        return out[:, :, :length].to(v.dtype)


def delta_rule_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor,
    log_decay: Tensor | None,
    state: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One decoding position of the (gated) delta rule, constant time and memory.

    q, k: (B, H, 1, Dk), L2-normalised by the caller; v: (B, H, 1, Dv);
    beta, log_decay: (B, H, 1) (log_decay None for no gate);
    state: (B, H, Dk, Dv) float32, or None for the empty state at the sequence start.
    Returns the output (B, H, 1, Dv) in v's dtype and the new state (B, H, Dk, Dv), float32
    (float64 for float64 inputs).
    """
    _check_shapes(q, k, v, beta, log_decay)
    if q.shape[2] != 1:
        raise ValueError(f"delta_rule_step takes one position (L = 1); got L = {q.shape[2]}")
    dtype = compute_dtype(q, k, v, beta, log_decay, state)
    out_dtype = v.dtype
    batch, heads, _, dk = q.shape
    with float32_region(q.device):
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if state is None:
            state = q.new_zeros(batch, heads, dk, v.shape[-1])
        state = state.to(dtype)
        if log_decay is not None:
            state = log_decay.to(dtype).exp()[..., None] * state
        # S = a S - beta k k^T a S + beta k v^T, with the erase and write folded into one
        # rank-one update by the prediction error v - (a S)^T k.
        error = beta.to(dtype)[..., None] * (v - k @ state)  # (B, H, 1, Dv)
        state = state + k.transpose(-1, -2) @ error
        return (q @ state).to(out_dtype), state
