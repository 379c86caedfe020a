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
chunks at once. The state's dependence on the previous chunk is a matrix, not a scalar:

    u = U - W S,    out = (Q * e^G) S + tril(Q K^T * e^{G_r - G_i}) u,
    S <- e^{G_C} S + (K * e^{G_C - G})^T u = M S + R,

with `M = e^{G_C} I - (K * e^{G_C - G})^T W` and `R = (K * e^{G_C - G})^T U` again of the
chunk alone. So only `S <- M S + R` is scanned, one small matmul per chunk in a loop
(`state_scan`, whose backward is the reverse scan); then u and the outputs of every chunk
come from batched products with the states entering them. Autograd of a loop that indexed
the chunks' tensors spent most of a training step materialising a zero-filled gradient of
the whole tensor per index (quadratic in the chunk count). The backward of the whole
chunked form is written by hand (`_DeltaChunked`): it keeps the solve's W and U, the
transitions and the states rather than every intermediate, and recomputes the C x C
products.

Decoding runs the recurrence one token at a time in constant time and memory.
"""

from __future__ import annotations

from typing import Any

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
    batch, heads, length, _ = q.shape
    dv = v.shape[-1]
    dtype = compute_dtype(q, k, v, beta, log_decay)
    # A sequence shorter than a chunk needs no padding up to a whole chunk.
    c = min(chunk_size, length)
    pad = -length % c
    n = (length + pad) // c

    with float32_region(q.device):
        # Padded positions have k = v = 0, beta = 0 and no decay: they write nothing, erase
        # nothing and sit after every real position, so they change no real output.
        # Contiguous: q, k and v are views of the short convolution's (B, L, 3 H Dh) output,
        # and every batched product would copy a strided operand again.
        qc, kc, vc = (
            F.pad(x.to(dtype), (0, 0, 0, pad)).contiguous().view(batch, heads, n, c, x.shape[-1])
            for x in (q, k, v)
        )
        bc = F.pad(beta.to(dtype), (0, pad)).reshape(batch, heads, n, c, 1)
        g = (
            None
            if log_decay is None
            else F.pad(log_decay.to(dtype), (0, pad)).reshape(batch, heads, n, c)
        )
        out: Tensor = _DeltaChunked.apply(qc, kc, vc, bc, g)
        return out.reshape(batch, heads, n * c, dv)[:, :, :length].to(v.dtype)


class _DeltaChunked(torch.autograd.Function):
    """The chunked form on chunked inputs, `q, k: (B, H, N, C, Dk)`, `v: (B, H, N, C, Dv)`,
    `beta: (B, H, N, C, 1)`, `g: (B, H, N, C)` or None; returns `(B, H, N, C, Dv)`.

    Its backward is written out (the module docstring's equations, differentiated in
    reverse order) and keeps the inputs, the segment decays, W and U, the transitions and
    the states: the solve and the scan are not redone, the C x C products are (two
    matmuls). Autograd of the same steps kept about three times as many tensors of q's
    size and spent a third of its time reducing broadcast gradients (`beta * k`,
    `exp(G) * q`).
    """

    @staticmethod
    def forward(
        ctx: Any, qc: Tensor, kc: Tensor, vc: Tensor, bc: Tensor, g: Tensor | None
    ) -> Tensor:
        dk = kc.shape[-1]
        dv = vc.shape[-1]
        k_beta = bc * kc  # (B, H, N, C, Dk)
        # A = diag(beta) K K^T (times the decays), used only below its diagonal: the
        # unit-triangular solve reads nothing else, and its gradient is zero elsewhere.
        a = k_beta @ kc.transpose(-1, -2)  # (B, H, N, C, C)
        qk = qc @ kc.transpose(-1, -2)  # (B, H, N, C, C)
        if g is None:
            ratio = None
            q_scaled, k_to_end, chunk_decay = qc, kc, None
            qk = qk.tril()
        else:
            cum = g.cumsum(-1)  # (B, H, N, C): G_r, in-chunk, never positive
            ratio = _segment_decays(g)  # e^{G_r - G_i}, 0 above the diagonal
            a = a * ratio
            qk = qk * ratio
            q_scaled = qc * cum[..., None].exp()
            k_beta = k_beta * cum[..., None].exp()
            k_to_end = kc * ratio[..., -1, :, None]  # e^{G_C - G_i}
            chunk_decay = cum[..., -1, None, None].exp()  # (B, H, N, 1, 1)
        # One solve gives W = T diag(beta e^G) K and U = T diag(beta) V together; solving is
        # also more accurate than forming T and multiplying.
        wu = torch.linalg.solve_triangular(
            a, torch.cat([k_beta, bc * vc], dim=-1), upper=False, unitriangular=True
        )
        w, u = wu.split([dk, dv], dim=-1)  # (B, H, N, C, Dk), (B, H, N, C, Dv)

        # S_next = e^{G_C} S + K_end^T (U - W S) = M S + R: every chunk's M and R at once,
        # then only the (Dk x Dk) by (Dk x Dv) products of the scan are sequential.
        k_to_end_t = k_to_end.transpose(-1, -2)
        transition = -(k_to_end_t @ w)  # (B, H, N, Dk, Dk)
        diagonal = transition.diagonal(dim1=-2, dim2=-1)
        diagonal += 1.0 if chunk_decay is None else chunk_decay[..., 0]
        transition, states = _scan(transition, k_to_end_t @ u)  # chunk-major
        # (B, H, N, Dk, Dv), the state entering each chunk; one copy for the products below.
        entering = states.movedim(0, 2).contiguous()
        out = q_scaled @ entering + qk @ (u - w @ entering)
        ctx.save_for_backward(qc, kc, vc, bc, g, ratio, wu, transition, entering)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        qc, kc, vc, bc, g, ratio, wu, transition, entering = ctx.saved_tensors
        dk = kc.shape[-1]
        with float32_region(qc.device):
            w, u = wu.split([dk, vc.shape[-1]], dim=-1)
            k_t = kc.transpose(-1, -2)
            if ratio is None:
                gains, k_to_end = None, kc
                q_scaled, qk_raw = qc, qc @ k_t
                qk = qk_raw.tril()
            else:
                gains = g.cumsum(-1).exp()[..., None]  # e^{G}: (B, H, N, C, 1)
                k_to_end = kc * ratio[..., -1, :, None]
                q_scaled = qc * gains
                qk_raw = qc @ k_t
                qk = qk_raw * ratio
            corrected = u - w @ entering  # u = U - W S

            # out = (Q e^G) S + QK u.
            d_q_scaled = grad @ entering.transpose(-1, -2)  # (B, H, N, C, Dk)
            d_entering = q_scaled.transpose(-1, -2) @ grad  # (B, H, N, Dk, Dv)
            d_qk = grad @ corrected.transpose(-1, -2)  # (B, H, N, C, C)
            d_u = qk.transpose(-1, -2) @ grad  # through u = U - W S
            d_w = -(d_u @ entering.transpose(-1, -2))
            d_entering -= w.transpose(-1, -2) @ d_u

            # The scan S_{i+1} = M_i S_i + R_i, M = e^{G_C} I - K_end^T W, R = K_end^T U.
            d_update = _reverse_scan(transition, d_entering.movedim(2, 0)).movedim(0, 2)
            d_update = d_update.contiguous()  # dR_i = L_{i+1}, (B, H, N, Dk, Dv)
            d_transition = d_update @ entering.transpose(-1, -2)  # dM_i = L_{i+1} S_i^T
            d_k_to_end = u @ d_update.transpose(-1, -2) - w @ d_transition.transpose(-1, -2)
            d_w -= k_to_end @ d_transition
            d_u += k_to_end @ d_update

            # The solve (I + A) [W | U] = [K_beta e^G | beta V]: the right-hand side's
            # gradient solves the transposed system, and A's is -(that) [W | U]^T, strictly
            # below the diagonal (nothing else of A is read).
            k_beta = bc * kc
            a_raw = k_beta @ k_t
            a = a_raw if ratio is None else a_raw * ratio
            d_rhs = torch.linalg.solve_triangular(
                a.transpose(-1, -2), torch.cat([d_w, d_u], dim=-1), upper=True, unitriangular=True
            )
            d_a = -(d_rhs @ wu.transpose(-1, -2)).tril_(-1)
            d_k_beta_scaled, d_v_beta = d_rhs.split([dk, vc.shape[-1]], dim=-1)
            d_v = bc * d_v_beta
            d_beta = torch.linalg.vecdot(d_v_beta, vc)

            if ratio is None:
                d_k_beta = d_k_beta_scaled
                d_a_raw = d_a
                d_qk_raw = d_qk.tril()
                d_q = d_q_scaled
                d_k = d_k_to_end
            else:
                assert gains is not None
                d_k_beta = d_k_beta_scaled * gains
                d_cum = torch.linalg.vecdot(d_k_beta_scaled, k_beta) * gains[..., 0]
                d_cum += torch.linalg.vecdot(d_q_scaled, qc) * gains[..., 0]
                d_q = d_q_scaled * gains
                d_k = d_k_to_end * ratio[..., -1, :, None]
                # The segment decays' gradient times themselves (what their backward reads):
                # d_a * a_raw * ratio = d_a * a, and likewise for QK and K_end's last row.
                weighted = torch.addcmul(d_a * a, d_qk, qk)
                weighted[..., -1, :] += torch.linalg.vecdot(d_k_to_end, k_to_end)
                d_a_raw = d_a * ratio
                d_qk_raw = d_qk * ratio
                # e^{G_C} on M's diagonal.
                d_cum[..., -1] += (
                    d_transition.diagonal(dim1=-2, dim2=-1).sum(-1) * gains[..., -1, 0]
                )
            # A = diag(beta) K K^T, QK = Q K^T (times the decays).
            d_k_beta += d_a_raw @ kc
            d_k += d_a_raw.transpose(-1, -2) @ k_beta
            d_q += d_qk_raw @ kc
            d_k += d_qk_raw.transpose(-1, -2) @ qc
            d_k += bc * d_k_beta
            d_beta += torch.linalg.vecdot(d_k_beta, kc)
            d_g = None
            if ratio is not None:
                # G = cumsum(g) within the chunk, and the segment decays' own backward.
                d_g = d_cum.flip(-1).cumsum(-1).flip(-1) + _segment_decays_backward(weighted)
            return d_q, d_k, d_v, d_beta.unsqueeze(-1), d_g


def segment_decays(log_decay: Tensor) -> Tensor:
    """`exp(G_r - G_i)` for `i <= r` and 0 above the diagonal, per chunk, for the in-chunk
    cumulative sums `G` of the log decays.

    Shapes: `log_decay: (B, H, N, C)`; returns `(B, H, N, C, C)`.
    """
    out: Tensor = _SegmentDecays.apply(log_decay)
    return out


class _SegmentDecays(torch.autograd.Function):
    """`segment_decays`, with a backward of two reductions of the C x C gradient instead of
    autograd's reversed cumulative sum, mask and expand of it."""

    @staticmethod
    def forward(ctx: Any, g: Tensor) -> Tensor:
        ratio = _segment_decays(g)
        ctx.save_for_backward(ratio)
        return ratio

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (ratio,) = ctx.saved_tensors
        return _segment_decays_backward(grad * ratio)


def _segment_decays(g: Tensor) -> Tensor:
    """`segment_decays`' values: `g: (B, H, N, C)` -> `(B, H, N, C, C)`."""
    c = g.shape[-1]
    # G_r - G_i summed directly as sum_{i < s <= r} g_s rather than subtracted: after a
    # strong decay both cumulative sums are large (-30 x 32 = -960) and their float32
    # difference loses ~1e-4 of a ratio near 1. Above the diagonal, -inf: exp only of
    # sums <= 0, never of the large positive numbers strong decay would give there.
    segment = g[..., :, None].expand(*g.shape, c).tril(-1).cumsum(-2)
    above = torch.ones(c, c, dtype=torch.bool, device=g.device).triu(1)
    return segment.masked_fill_(above, -torch.inf).exp_()


def _segment_decays_backward(weighted: Tensor) -> Tensor:
    """The gradient reaching `g: (B, H, N, C)` from the segment decays' gradient times
    the decays themselves, `weighted = grad * ratio: (B, H, N, C, C)`."""
    # ratio[r, i] depends on g_s for i < s <= r with derivative ratio[r, i], so with
    # P = grad * ratio (0 above the diagonal), dg_s = sum_{i < s <= r} P[r, i]: the
    # columns i < s summed over every row, less the block i, r < s (rows r < s summed;
    # the diagonal terms cancel between the two).
    net = weighted.sum(-2) - weighted.sum(-1)  # (B, H, N, C): column sums - row sums
    return net.cumsum(-1) - net


def state_scan(transition: Tensor, update: Tensor) -> Tensor:
    """The states entering each chunk of `S_0 = 0`, `S_{i+1} = M_i S_i + R_i`.

    Shapes: `transition` M `(B, H, N, Dk, Dk)`, `update` R `(B, H, N, Dk, Dv)`; returns
    `(B, H, N, Dk, Dv)`, `S_0 .. S_{N-1}`.
    """
    out: Tensor = _StateScan.apply(transition, update)
    return out


class _StateScan(torch.autograd.Function):
    """The scan of `state_scan`, with its backward the reverse scan (`_scan_backward`): a
    few small matmuls per chunk instead of autograd's graph of them."""

    @staticmethod
    def forward(ctx: Any, transition: Tensor, update: Tensor) -> Tensor:
        transition, states = _scan(transition, update)
        ctx.save_for_backward(transition, states)
        return states.movedim(0, 2)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        transition, states = ctx.saved_tensors
        return _scan_backward(transition, states, grad.movedim(2, 0))


def _scan(transition: Tensor, update: Tensor) -> tuple[Tensor, Tensor]:
    """`state_scan` chunk-major, so each step reads and writes contiguous `(B, H, D, D)`
    blocks: `transition: (B, H, N, Dk, Dk)`, `update: (B, H, N, Dk, Dv)` -> the transitions
    `(N, B, H, Dk, Dk)` (contiguous, for the backward) and the states `(N, B, H, Dk, Dv)`."""
    transition = transition.movedim(2, 0).contiguous()
    update = update.movedim(2, 0)
    states = torch.empty_like(update, memory_format=torch.contiguous_format)
    states[0] = 0.0
    for i in range(len(states) - 1):
        torch.matmul(transition[i], states[i], out=states[i + 1])
        states[i + 1] += update[i]
    return transition, states


def _scan_backward(transition: Tensor, states: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """`dM_i = L_{i+1} S_i^T`, `dR_i = L_{i+1}` from `_scan`'s chunk-major `transition`
    and `states` and `grad: (N, B, H, Dk, Dv)` on the states (`_reverse_scan`); returns
    `dM: (B, H, N, Dk, Dk)`, `dR: (B, H, N, Dk, Dv)`."""
    reaching = _reverse_scan(transition, grad)
    grad_transition = reaching @ states.transpose(-1, -2)
    return grad_transition.movedim(0, 2), reaching.movedim(0, 2)


def _reverse_scan(transition: Tensor, grad: Tensor) -> Tensor:
    """`L_{i+1}` for every chunk i, chunk-major `(N, B, H, Dk, Dv)`: the gradient reaching
    the state after chunk i, by the reverse scan `L_i = dS_i + M_i^T L_{i+1}` from the
    chunk-major transitions `(N, B, H, Dk, Dk)` and `grad: (N, B, H, Dk, Dv)` on the
    states entering each chunk."""
    count = len(grad)
    # reaching[i] = L_{i+1}; L_N = 0 (S_N is no output).
    reaching = torch.empty_like(grad, memory_format=torch.contiguous_format)
    reaching[count - 1] = 0.0
    if count > 1:
        reaching[count - 2] = grad[count - 1]
    for i in range(count - 2, 0, -1):
        torch.matmul(transition[i].transpose(-1, -2), reaching[i], out=reaching[i - 1])
        reaching[i - 1] += grad[i]
    return reaching


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
