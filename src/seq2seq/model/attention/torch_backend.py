"""The memory-lean PyTorch backend of the linear kinds (`model.linear.backend=torch`).

Autograd would save the float32 features `phi(q), phi(k): (B, H, L, m)` for the backward
pass; with FAVOR+'s m = Dh ln Dh features each is several times the bytes of q. These
autograd functions save only what they were given (q, k, v, the padding mask), their output
and the per-row denominators (and, non-causal, the small `m x (Dh + 1)` state), and recompute
the features in backward, where the feature map's own `vjp` takes them back to q and k.

The gradient, with `N = [num, den] = A [v, 1]` for the (causally masked) weights
`A = phi(q) phi(k)^T` and `out = num / den`: `G = [dout / den, -(dout . out) / den]` is the
gradient with respect to N, and then `dphi(q) = (G [v, 1]^T) phi(k)`, `dphi(k) = (G [v, 1]^T)^T
phi(q)`, `d[v, 1] = A^T G`, each masked as A is; the causal kind computes them chunk by chunk
like its forward, with states carried forwards (for `dphi(q)`) and backwards (for the rest).

Under rotary positions the numerator takes rotated features and the normalizer the plain
ones (RoFormer's eq. 19, `rotary.py`): two products instead of one, written with PyTorch
ops and run under a non-reentrant `torch.utils.checkpoint`, so these too keep nothing but
their inputs for the backward pass and recompute the rest there.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from seq2seq.model.attention.base import SMALLEST_DENOMINATOR, float32_region
from seq2seq.model.attention.feature_maps import FeatureMap
from seq2seq.model.attention.rotary import Rotary


def masked_features(
    feature_map: FeatureMap,
    q: Tensor,
    k: Tensor,
    key_padding_mask: Tensor | None,
    *,
    all_keys: bool,
) -> tuple[Tensor, Tensor]:
    """float32 `phi(q): (B, H, Lq, m)` and `phi(k): (B, H, Lk, m)`, padded keys zeroed;
    `all_keys` (non-causal) lets the keys share a stabilizing scale."""
    q_features = feature_map(q, is_query=True)
    k_features = feature_map(k, is_query=False, mask=key_padding_mask, all_keys=all_keys)
    return q_features, k_features


def with_ones(v: Tensor) -> Tensor:
    """`(B, H, L, Dh) -> (B, H, L, Dh + 1)` float32 with a last column of ones.

    Products with it carry the normalizer `sum phi(k)` as their last column, so one
    matmul gives numerator and denominator together."""
    return F.pad(v.float(), (0, 1), value=1.0)


def normalized(numerator_and_denominator: Tensor) -> Tensor:
    """Split the last column off as the denominator and divide."""
    numerator, denominator = numerator_and_denominator.split(
        [numerator_and_denominator.shape[-1] - 1, 1], dim=-1
    )
    return divided(numerator, denominator)


def divided(numerator: Tensor, denominator: Tensor) -> Tensor:
    """`numerator: (..., X) / denominator: (..., 1)`; a row with no weight at all (every
    feature 0) gives 0 and passes no gradient."""
    return (numerator / denominator.clamp_min(SMALLEST_DENOMINATOR)).masked_fill_(
        denominator <= 0, 0.0
    )


def output_gradient(grad_out: Tensor, out: Tensor, denominator: Tensor) -> Tensor:
    """`(B, H, L, Dh + 1)` float32 gradient with respect to `[numerator, denominator]` of
    `normalized`, from `grad_out, out: (B, H, L, Dh)` and `denominator: (B, H, L, 1)`.

    As autograd differentiates `normalized`: no gradient where the denominator is 0, and
    none to a denominator below the clamp. The arithmetic is float32 whatever the inputs'
    dtype, as in the forward pass."""
    grad_out, out = grad_out.float(), out.float()
    grad_numerator = (grad_out / denominator.clamp_min(SMALLEST_DENOMINATOR)).masked_fill_(
        denominator <= 0, 0.0
    )
    grad_denominator = (
        (grad_numerator * out)
        .sum(-1, keepdim=True)
        .neg_()
        .masked_fill_(denominator < SMALLEST_DENOMINATOR, 0.0)
    )
    return torch.cat([grad_numerator, grad_denominator], dim=-1)


def exclusive_cumsum(x: Tensor, dim: int, *, reverse: bool = False) -> Tensor:
    """`out[i] = sum_{j < i} x[j]` (or `j > i` when `reverse`) along `dim`, shifting rather
    than subtracting (exact)."""
    if x.device.type == "cpu" and not x.requires_grad and not torch.compiler.is_compiling():
        return _running_sums(x, dim, reverse=reverse)
    if reverse:
        return exclusive_cumsum(x.flip(dim), dim).flip(dim)
    total = x.cumsum(dim)
    return torch.cat(
        [torch.zeros_like(x.narrow(dim, 0, 1)), total.narrow(dim, 0, x.shape[dim] - 1)], dim
    )


def _running_sums(x: Tensor, dim: int, *, reverse: bool) -> Tensor:
    """`exclusive_cumsum` as one in-place add per slice. On the CPU, `torch.cumsum` along a
    middle dim scans element by element (21 ms for the (4, 64, 266, 65) states of 4,096
    tokens; these 63 adds of contiguous slices take 2 ms). Eager only: compiled, the loop
    would unroll, and it has no autograd (out=)."""
    out = torch.empty_like(x)
    count = x.shape[dim]
    steps = range(count - 2, -1, -1) if reverse else range(1, count)
    first = count - 1 if reverse else 0
    out.select(dim, first).zero_()
    for i in steps:
        previous = i + 1 if reverse else i - 1
        torch.add(out.select(dim, previous), x.select(dim, previous), out=out.select(dim, i))
    return out


def _chunked(x: Tensor, chunk: int) -> Tensor:
    """`(B, H, L, X) -> (B * H * n, C, X)`, zero-padded to a multiple of C."""
    batch, heads, length, width = x.shape
    pad = -length % chunk
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(batch * heads * ((length + pad) // chunk), chunk, width)


def _unchunked(x: Tensor, like: Tensor) -> Tensor:
    """`(B * H * n, C, X) -> (B, H, L, X)` for `like: (B, H, L, _)`, dropping the padding."""
    batch, heads, length, _ = like.shape
    return x.reshape(batch, heads, -1, x.shape[-1])[:, :, :length]


def _chunk_sums(x: Tensor, like: Tensor, *, reverse: bool = False) -> Tensor:
    """Per-chunk `(B * H * n, a, b)` -> the exclusive sums over the chunks before each (or
    after, `reverse`), same shape; `like: (B, H, ...)` gives B and H."""
    batch, heads = like.shape[:2]
    per_head = x.view(batch * heads, -1, *x.shape[1:])
    return exclusive_cumsum(per_head, 1, reverse=reverse).view(x.shape)


def causal_chunk_products(
    q_features: Tensor, k_features: Tensor, values: Tensor, chunk: int
) -> Tensor:
    """`sum_{j <= i} (phi(q_i) . phi(k_j)) values_j`: `(B, H, L, X)` for `values: (B, H, L, X)`.

    Inside a chunk, a causally masked C x C product; earlier chunks act through their summed
    states `(m, X)`, an exclusive cumulative sum over chunks (the parallel form)."""
    qc, kc, vc = (_chunked(x, chunk) for x in (q_features, k_features, values))
    scores = torch.bmm(qc, kc.transpose(-1, -2)).tril_()  # keys up to the query
    out = torch.bmm(scores, vc)
    if qc.shape[0] > q_features.shape[0] * q_features.shape[1]:  # more than one chunk
        before = _chunk_sums(torch.bmm(kc.transpose(-1, -2), vc), q_features)
        out = out.baddbmm_(qc, before)
    return _unchunked(out, q_features)


class _LinearAttention(torch.autograd.Function):
    """Non-causal: saves the `(B, H, m, Dh + 1)` state besides the output and denominators."""

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        feature_map: FeatureMap,
    ) -> Tensor:
        q_features, k_features = masked_features(feature_map, q, k, key_padding_mask, all_keys=True)
        state = k_features.transpose(-1, -2) @ with_ones(v)  # (B, H, m, Dh + 1)
        numerator_and_denominator = q_features @ state
        out = normalized(numerator_and_denominator).to(v.dtype)
        ctx.feature_map = feature_map
        # A copy: a view of the last column would keep the whole product alive.
        denominator = numerator_and_denominator[..., -1:].clone()
        ctx.save_for_backward(q, k, v, key_padding_mask, state, out, denominator)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, key_padding_mask, state, out, denominator = ctx.saved_tensors
        feature_map: FeatureMap = ctx.feature_map
        with float32_region(q.device):
            q_features, k_features = masked_features(
                feature_map, q, k, key_padding_mask, all_keys=True
            )
            grad = output_gradient(grad_out, out, denominator)  # (B, H, Lq, Dh + 1)
            grad_state = q_features.transpose(-1, -2) @ grad  # (B, H, m, Dh + 1)
            grad_q = feature_map.vjp(q, q_features, grad @ state.transpose(-1, -2))
            grad_k = feature_map.vjp(
                k, k_features, with_ones(v) @ grad_state.transpose(-1, -2), mask=key_padding_mask
            )
            grad_v = k_features @ grad_state[..., :-1]
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


class _CausalLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        feature_map: FeatureMap,
        chunk: int,
    ) -> Tensor:
        q_features, k_features = masked_features(
            feature_map, q, k, key_padding_mask, all_keys=False
        )
        numerator_and_denominator = causal_chunk_products(
            q_features, k_features, with_ones(v), chunk
        )
        out = normalized(numerator_and_denominator).to(v.dtype)
        ctx.feature_map = feature_map
        ctx.chunk = chunk
        denominator = numerator_and_denominator[..., -1:].clone()
        ctx.save_for_backward(q, k, v, key_padding_mask, out, denominator)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, key_padding_mask, out, denominator = ctx.saved_tensors
        feature_map: FeatureMap = ctx.feature_map
        chunk: int = ctx.chunk
        with float32_region(q.device):
            q_features, k_features = masked_features(
                feature_map, q, k, key_padding_mask, all_keys=False
            )
            qc, kc = _chunked(q_features, chunk), _chunked(k_features, chunk)
            vc = _chunked(with_ones(v), chunk)
            gc = _chunked(output_gradient(grad_out, out, denominator), chunk)
            weights = torch.bmm(qc, kc.transpose(-1, -2)).tril_()  # (B * H * n, C, C)
            grad_weights = torch.bmm(gc, vc.transpose(-1, -2)).tril_()
            grad_qc = torch.bmm(grad_weights, kc)
            grad_kc = torch.bmm(grad_weights.transpose(-1, -2), qc)
            grad_vc = torch.bmm(weights.transpose(-1, -2), gc)
            if qc.shape[0] > q.shape[0] * q.shape[1]:  # more than one chunk
                # Earlier chunks reach a query through their summed states; later chunks'
                # queries reach a key through the summed `phi(q)^T G` (m x (Dh + 1)) after it.
                before = _chunk_sums(torch.bmm(kc.transpose(-1, -2), vc), q)
                grad_qc.baddbmm_(gc, before.transpose(-1, -2))
                after = _chunk_sums(torch.bmm(qc.transpose(-1, -2), gc), q, reverse=True)
                grad_kc.baddbmm_(vc, after.transpose(-1, -2))
                grad_vc.baddbmm_(kc, after)
            grad_q = feature_map.vjp(q, q_features, _unchunked(grad_qc, q))
            grad_k = feature_map.vjp(k, k_features, _unchunked(grad_kc, k), mask=key_padding_mask)
            grad_v = _unchunked(grad_vc, v)[..., :-1]
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None, None


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, feature_map: FeatureMap
) -> Tensor:
    """Non-causal linear attention, `(B, H, Lq, Dh)` in v's dtype.

    `q: (B, H, Lq, Dh)`, `k, v: (B, H, Lk, Dh)`, `key_padding_mask: (B, Lk)` True where real."""
    with float32_region(q.device):
        out: Tensor = _LinearAttention.apply(q, k, v, key_padding_mask, feature_map)
    return out


def causal_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
    *,
    chunk_size: int,
) -> Tensor:
    """Causal linear attention in chunks of `chunk_size`, `(B, H, L, Dh)` in v's dtype.

    `q, k, v: (B, H, L, Dh)`, `key_padding_mask: (B, L)` True where real."""
    chunk = max(1, min(chunk_size, q.shape[2]))
    with float32_region(q.device):
        out: Tensor = _CausalLinearAttention.apply(q, k, v, key_padding_mask, feature_map, chunk)
    return out


# --- rotary positions (RoFormer's eq. 19) ---------------------------------------------------


def _rotary_linear(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
    rotary: Rotary,
) -> Tensor:
    q_features, k_features = masked_features(feature_map, q, k, key_padding_mask, all_keys=True)
    state = rotary.rotate(k_features).transpose(-1, -2) @ v.float()  # (B, H, m, Dh)
    numerator = rotary.rotate(q_features) @ state
    denominator = q_features @ k_features.sum(-2).unsqueeze(-1)  # (B, H, L, 1)
    return divided(numerator, denominator).to(v.dtype)


def _rotary_causal_linear(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
    rotary: Rotary,
    chunk: int,
) -> Tensor:
    q_features, k_features = masked_features(feature_map, q, k, key_padding_mask, all_keys=False)
    numerator = causal_chunk_products(
        rotary.rotate(q_features), rotary.rotate(k_features), v.float(), chunk
    )
    # The normalizer needs no chunked product: phi(q_i) . sum_{j <= i} phi(k_j).
    denominator = (q_features * k_features.cumsum(-2)).sum(-1, keepdim=True)
    return divided(numerator, denominator).to(v.dtype)


def _recomputed_in_backward(function: Any, *args: Any) -> Tensor:
    """`function(*args)`, keeping only its inputs for backward, where it runs again."""
    out: Tensor
    if torch.is_grad_enabled():
        out = checkpoint(function, *args, use_reentrant=False, preserve_rng_state=False)
    else:
        out = function(*args)
    return out


def rotary_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
    rotary: Rotary,
) -> Tensor:
    """Non-causal linear self-attention under rotary positions, `(B, H, L, Dh)` in v's dtype:
    rotated features in the numerator, plain ones in the normalizer.

    `q, k, v: (B, H, L, Dh)`, `key_padding_mask: (B, L)` True where real."""
    with float32_region(q.device):
        return _recomputed_in_backward(
            _rotary_linear, q, k, v, key_padding_mask, feature_map, rotary
        )


def rotary_causal_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
    rotary: Rotary,
    *,
    chunk_size: int,
) -> Tensor:
    """Causal linear attention under rotary positions, in chunks of `chunk_size`:
    `(B, H, L, Dh)` in v's dtype. `q, k, v: (B, H, L, Dh)`, `key_padding_mask: (B, L)`."""
    chunk = max(1, min(chunk_size, q.shape[2]))
    with float32_region(q.device):
        return _recomputed_in_backward(
            _rotary_causal_linear, q, k, v, key_padding_mask, feature_map, rotary, chunk
        )
