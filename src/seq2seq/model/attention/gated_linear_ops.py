"""Gated linear attention with a scalar per-head forget gate (the Mamba-2 / RetNet /
scalar-GLA form), as pure functions.

Per batch and head, with the state `S_t: (Dk, Dv)` and `S_0 = 0`:

    S_t = a_t S_{t-1} + k_t v_t^T,    o_t = S_t^T q_t,    a_t = exp(g_t), g_t <= 0.

No normalizer (the caller norms each head's output) and q, k are used as given (the
caller scales them).

`gated_linear_attention` is the chunked parallel form: the sequence is padded to a
multiple of the chunk size C and cut into chunks. The gates stay in log space, as
within-chunk cumulative sums `G` of `g`: a product of gates over a span is `exp` of a
difference of two `G`s, and only differences over causal spans (`<= 0`, as `g <= 0`) are
ever exponentiated, so strong decays underflow to 0 instead of overflowing. Inside a
chunk, a causally masked C x C matrix `(q_i . k_j) exp(G_i - G_j)`; across chunks, each
chunk's state `U_c` is decayed and summed into the state entering every later chunk by
one (Nc x Nc) lower-triangular matrix of decays, so there is no Python loop over chunks
(torch.compile does not unroll it). The backward is written by hand
(`_GatedLinearChunked`): it keeps q, k, v, the log decays and the output, recomputes the
C x C scores, and runs the decay between chunks as two scans over the chunks (one small
multiply-add each) where the (Nc x Nc) matrix would cost Nc^2 Dk Dv twice more.
`gated_linear_step` is the recurrence itself, for decoding: constant time and memory per
token.

Everything runs in float32 (float64 for float64 inputs, so tests can compare tightly)
whatever the autocast dtype; outputs come back in v's dtype, states stay float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.base import compute_dtype, float32_region


def gated_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, *, chunk_size: int = 64
) -> Tensor:
    """Causal gated linear attention over whole sequences, chunk by chunk.

    Shapes: `q, k: (B, H, L, Dk)`, `v: (B, H, L, Dv)`, `log_decay: (B, H, L)` with
    entries `<= 0` (not checked: that would synchronize with the device); returns
    `(B, H, L, Dv)` in v's dtype.
    """
    _check_sequence(q, k, v, log_decay, chunk_size)
    dtype = compute_dtype(q, k, v, log_decay)
    with float32_region(q.device):
        out: Tensor = _GatedLinearChunked.apply(
            q.to(dtype), k.to(dtype), v.to(dtype), log_decay.to(dtype), chunk_size
        )
        return out.to(v.dtype)


class _GatedLinearChunked(torch.autograd.Function):
    """`gated_linear_attention` in its compute dtype, with a backward that recomputes the
    C x C gated scores and the chunks' states from q, k, v and the log decays instead of
    keeping them: autograd of the chunked form kept about a dozen tensors of the size of
    q per layer (the scores, their decays, the states), half the gated kinds' memory.

    The log decays' gradient needs no C x C pass of its own: with `A_ij = (q_i . k_j)
    exp(G_i - G_j)` and `P = dA * A`, `dG_i` gets `sum_j P_ij = dO_i . o_i` (the whole
    output's, as the inter-chunk term `exp(G_i) q_i^T S` gives the same) and loses
    `sum_j P_ji = v_i . dv_i` (the intra-chunk part of dv); likewise across chunks, the
    exponent `T_{c-1} - T_n` of `S_c = sum_n exp(T_{c-1} - T_n) U_n` gives `dT_{c-1} +=
    <dS_c, S_c>` and `dT_n -= <dU_n, U_n>`.
    """

    @staticmethod
    def forward(
        ctx: Any, q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, chunk_size: int
    ) -> Tensor:
        q_c, k_c, v_c = (_chunked(x, chunk_size) for x in (q, k, v))
        cumulative = _chunked_cumsum(log_decay, chunk_size)
        out = _intra_chunk(q_c, k_c, v_c, cumulative) + _inter_chunk(q_c, k_c, v_c, cumulative)
        out = out.flatten(2, 3)[:, :, : q.shape[2]]
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(q, k, v, log_decay, out)
        return out

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, None]:
        q, k, v, log_decay, out = ctx.saved_tensors
        chunk_size, length = ctx.chunk_size, q.shape[2]
        with float32_region(q.device):
            q_c, k_c, v_c = (_chunked(x, chunk_size) for x in (q, k, v))
            d_out = _chunked(grad.to(q.dtype), chunk_size)  # (B, H, Nc, C, Dv)
            cumulative = _chunked_cumsum(log_decay, chunk_size)  # G: (B, H, Nc, C)

            # Within chunks: A = (Q K^T) * E, E = exp(G_i - G_j) below the diagonal, 0 above.
            chunk = cumulative.shape[-1]
            causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
            decays = (
                (cumulative.unsqueeze(-1) - cumulative.unsqueeze(-2))
                .masked_fill_(~causal, float("-inf"))
                .exp_()
            )
            scores = (q_c @ k_c.transpose(-1, -2)).mul_(decays)  # A
            d_scores = d_out @ v_c.transpose(-1, -2)  # dA
            d_v = scores.transpose(-1, -2) @ d_out
            # dG_i = dO_i . o_i (both parts of o_i scale with exp(G_i)) - v_i . dv_i (intra).
            d_cumulative = torch.linalg.vecdot(
                d_out, _chunked(out.to(q.dtype), chunk_size)
            ) - torch.linalg.vecdot(v_c, d_v)
            d_scores.mul_(decays)
            d_q = d_scores @ k_c
            d_k = d_scores.transpose(-1, -2) @ q_c

            # Across chunks: o_i += exp(G_i) q_i^T S_c, S_c = sum_{n < c} L_cn U_n.
            to_chunk_end = (cumulative[..., -1:] - cumulative).exp()
            k_to_end = k_c * to_chunk_end.unsqueeze(-1)
            chunk_states = k_to_end.transpose(-1, -2) @ v_c  # U: (B, H, Nc, Dk, Dv)
            # S and dU by scans over the chunks, S_{c+1} = e^{T_c - T_{c-1}} S_c + U_c and
            # dU_{c-1} = dS_c + e^{T_c - T_{c-1}} dU_c: a few small products per chunk, where
            # the (Nc x Nc) matrix of decays costs Nc^2 Dk Dv, most of the backward at 4,096.
            chunk_decays = cumulative[..., -1].exp()  # (B, H, Nc)
            incoming = _decayed_scan(chunk_decays, chunk_states, reverse=False)  # S
            gains = cumulative.exp()  # exp(G): (B, H, Nc, C)
            d_out_states = d_out @ incoming.transpose(-1, -2)  # (B, H, Nc, C, Dk)
            d_q += gains.unsqueeze(-1) * d_out_states
            d_incoming = (q_c * gains.unsqueeze(-1)).transpose(-1, -2) @ d_out  # dS
            d_states = _decayed_scan(chunk_decays, d_incoming, reverse=True)  # dU
            # dT_{c-1} += <dS_c, S_c> (S_0 is 0 and has no exponent), dT_n -= <dU_n, U_n>.
            d_totals = F.pad(
                torch.linalg.vecdot(d_incoming.flatten(-2), incoming.flatten(-2))[..., 1:], (0, 1)
            ) - torch.linalg.vecdot(d_states.flatten(-2), chunk_states.flatten(-2))
            d_chunk_total = d_totals.flip(-1).cumsum(-1).flip(-1)  # through T = cumsum
            # U = sum_j exp(G_last - G_j) k_j v_j^T.
            d_k_to_end = v_c @ d_states.transpose(-1, -2)  # (B, H, Nc, C, Dk)
            d_v += k_to_end @ d_states
            d_k += to_chunk_end.unsqueeze(-1) * d_k_to_end
            d_exponent = torch.linalg.vecdot(d_k_to_end, k_to_end)  # d(G_last - G_j)
            d_cumulative -= d_exponent
            d_cumulative[..., -1] += d_chunk_total + d_exponent.sum(-1)
            # G = cumsum(g) within each chunk.
            d_log_decay = d_cumulative.flip(-1).cumsum(-1).flip(-1)
            return (
                d_q.flatten(2, 3)[:, :, :length],
                d_k.flatten(2, 3)[:, :, :length],
                d_v.flatten(2, 3)[:, :, :length],
                d_log_decay.flatten(2, 3)[:, :, :length],
                None,
            )


def gated_linear_final_state(
    k: Tensor, v: Tensor, log_decay: Tensor, *, chunk_size: int = 64
) -> Tensor:
    """The state `S_L` after a whole sequence, from the chunked form (to prefill decoding).

    Shapes: `k: (B, H, L, Dk)`, `v: (B, H, L, Dv)`, `log_decay: (B, H, L)` (`<= 0`);
    returns `(B, H, Dk, Dv)` float32 (float64 for float64 inputs).
    """
    _check_sequence(k, k, v, log_decay, chunk_size)
    dtype = compute_dtype(k, v, log_decay)
    with float32_region(k.device):
        k_c, v_c = _chunked(k.to(dtype), chunk_size), _chunked(v.to(dtype), chunk_size)
        cumulative = _chunked_cumsum(log_decay.to(dtype), chunk_size)
        chunk_states, totals = _chunk_states(k_c, v_c, cumulative)
        # The padding has g = 0 and k = 0, so the last chunk's end is position L's.
        to_end = (totals[..., -1:] - totals).exp()
        return torch.einsum("bhn,bhnde->bhde", to_end, chunk_states)


def gated_linear_step(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, state: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One position of the recurrence, for decoding; `state=None` is the empty prefix.

    Shapes: `q, k: (B, H, 1, Dk)`, `v: (B, H, 1, Dv)`, `log_decay: (B, H, 1)` (`<= 0`),
    `state: (B, H, Dk, Dv)`; returns `out: (B, H, 1, Dv)` in v's dtype and the new state
    `(B, H, Dk, Dv)` float32 (float64 for float64 inputs).
    """
    if q.dim() != 4 or q.shape[2] != 1:
        raise ValueError(
            f"gated_linear_step takes one position, q: (B, H, 1, Dk); got {tuple(q.shape)}"
        )
    _check_sequence(q, k, v, log_decay, 1)
    batch, heads, _, dk = q.shape
    state_shape = (batch, heads, dk, v.shape[-1])
    if state is not None and state.shape != state_shape:
        raise ValueError(f"state must be (B, H, Dk, Dv) = {state_shape}; got {tuple(state.shape)}")
    dtype = compute_dtype(q, k, v, log_decay)
    with float32_region(q.device):
        new_state = k.to(dtype).transpose(-1, -2) @ v.to(dtype)
        if state is not None:
            new_state = log_decay.to(dtype).exp().unsqueeze(-1) * state.to(dtype) + new_state
        return (q.to(dtype) @ new_state).to(v.dtype), new_state


def _intra_chunk(q: Tensor, k: Tensor, v: Tensor, cumulative: Tensor) -> Tensor:
    """The part of each output from keys in its own chunk: `sum_{j <= i} (q_i . k_j)
    exp(G_i - G_j) v_j`, for the within-chunk cumulative sums `G` of the log decays.

    Shapes: `q, k: (B, H, Nc, C, Dk)`, `v: (B, H, Nc, C, Dv)`, `cumulative: (B, H, Nc, C)`;
    returns `(B, H, Nc, C, Dv)`.
    """
    chunk = cumulative.shape[-1]
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    # Above the diagonal G_i - G_j is a sum of -g, up to +C |g|: masked before exp, it
    # never overflows (and a masked_fill after exp would leave inf * 0 = NaN gradients).
    log_gates = (cumulative.unsqueeze(-1) - cumulative.unsqueeze(-2)).masked_fill(
        ~causal, float("-inf")
    )
    return ((q @ k.transpose(-1, -2)) * log_gates.exp()) @ v


def _inter_chunk(q: Tensor, k: Tensor, v: Tensor, cumulative: Tensor) -> Tensor:
    """The part of each output from keys in earlier chunks: `exp(G_i) q_i^T S_in(c)`, with
    `S_in(c) = sum_{c' < c} exp(T_{c-1} - T_{c'}) U_{c'}` for the chunk states `U` and the
    cumulative sums `T` of the chunks' total log decays.

    Shapes: `q, k: (B, H, Nc, C, Dk)`, `v: (B, H, Nc, C, Dv)`, `cumulative: (B, H, Nc, C)`
    (`G`); returns `(B, H, Nc, C, Dv)`.
    """
    chunk_states, totals = _chunk_states(k, v, cumulative)
    # T_{c-1} as T shifted, not T_c minus chunk c's total, so the exponent for c' = c - 1
    # is exactly 0 rather than a rounding error that could be above it.
    before = F.pad(totals[..., :-1], (1, 0))
    count = totals.shape[-1]
    earlier = torch.ones(count, count, dtype=torch.bool, device=q.device).tril(-1)
    log_decays = (before.unsqueeze(-1) - totals.unsqueeze(-2)).masked_fill(~earlier, float("-inf"))
    incoming = torch.einsum("bhcn,bhnde->bhcde", log_decays.exp(), chunk_states)
    return cumulative.exp().unsqueeze(-1) * (q @ incoming)


def _chunk_states(k: Tensor, v: Tensor, cumulative: Tensor) -> tuple[Tensor, Tensor]:
    """Each chunk's own state at its end, `U_c = sum_j exp(G_last - G_j) k_j v_j^T`, and the
    cumulative sums `T` of the chunks' total log decays.

    Shapes: `k: (B, H, Nc, C, Dk)`, `v: (B, H, Nc, C, Dv)`, `cumulative: (B, H, Nc, C)`
    (`G`); returns `U: (B, H, Nc, Dk, Dv)` and `T: (B, H, Nc)`.
    """
    # A cumulative sum of g <= 0 never increases (rounding is monotone), so this is <= 0.
    to_chunk_end = (cumulative[..., -1:] - cumulative).exp()
    chunk_states = (k * to_chunk_end.unsqueeze(-1)).transpose(-1, -2) @ v
    return chunk_states, cumulative[..., -1].cumsum(-1)


def _decayed_scan(decays: Tensor, updates: Tensor, *, reverse: bool) -> Tensor:
    """`S_0 = 0, S_{c+1} = a_c S_c + X_c` (the states entering each chunk), or with
    `reverse`, `Y_{N-1} = 0, Y_{c-1} = X_c + a_c Y_c` (their transpose, for gradients).

    Shapes: `decays` a `(B, H, Nc)`, `updates` X `(B, H, Nc, Dk, Dv)`; returns
    `(B, H, Nc, Dk, Dv)`. Chunk-major inside, so each step writes a contiguous block.
    """
    decays = decays.movedim(2, 0)[..., None, None]  # (Nc, B, H, 1, 1)
    updates = updates.movedim(2, 0)
    out = torch.empty_like(updates, memory_format=torch.contiguous_format)
    count = len(out)
    if reverse:
        out[count - 1] = 0.0
        for c in range(count - 1, 0, -1):
            torch.addcmul(updates[c], decays[c], out[c], out=out[c - 1])
    else:
        out[0] = 0.0
        for c in range(count - 1):
            torch.addcmul(updates[c], decays[c], out[c], out=out[c + 1])
    return out.movedim(0, 2)


def _chunked(x: Tensor, chunk_size: int) -> Tensor:
    """`(B, H, L, D) -> (B, H, Nc, C, D)`, zero-padded to `Nc * C` rows; zero keys, values
    and log decays make padding a no-op on the state."""
    batch, heads, length, dim = x.shape
    count = -(-length // chunk_size)
    # Contiguous: the chunks' batched products would each copy a strided operand (q, k and
    # v are views of the short convolution's (B, L, 3 H Dh) output).
    pad = count * chunk_size - length
    padded = F.pad(x, (0, 0, 0, pad)).contiguous() if pad else x.contiguous()
    return padded.view(batch, heads, count, chunk_size, dim)


def _chunked_cumsum(log_decay: Tensor, chunk_size: int) -> Tensor:
    """`G`: the cumulative sums of the log decays within each chunk.

    Shapes: `log_decay: (B, H, L)`; returns `(B, H, Nc, C)`.
    """
    return _chunked(log_decay.unsqueeze(-1), chunk_size).squeeze(-1).cumsum(-1)


def _check_sequence(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, chunk_size: int) -> None:
    """Fail fast on shapes that would otherwise broadcast into wrong results."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1; got {chunk_size}")
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(
            f"q and k must both be (B, H, L, Dk); got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must be (B, H, L, Dv) with q's (B, H, L) = {tuple(q.shape[:3])}; "
            f"got {tuple(v.shape)}"
        )
    if log_decay.shape != q.shape[:3]:
        raise ValueError(
            f"log_decay must be (B, H, L) = {tuple(q.shape[:3])}; got {tuple(log_decay.shape)}"
        )
    if q.shape[2] < 1:
        raise ValueError("the sequence must have at least one position (L >= 1)")
