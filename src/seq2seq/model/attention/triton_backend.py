"""The Triton backend of the linear kinds (`model.linear.backend=triton`).

Launches the kernels of `triton_kernels.py` behind `torch.library` custom ops, forward and
backward, so autograd saves only what the ops return and `torch.compile` sees each one as a
single opaque op (no graph break). Saved for the backward pass: q, k, v, the padding mask,
the output, the per-row denominators and FAVOR+'s per-query max (and, non-causal, the small
`(m, Dh)` state and each head's key shift); never the `(L, m)` features.

Each kernel has its own tiles (`Tiles`): rows per chunk and features per block (FAVOR+'s
m = 266 at Dh = 64 runs as 5 blocks of 64 forwards, 9 of 32 backwards); nothing is kept
per chunk, so forward and backward need not agree, and `model.linear.chunk_size` (the
torch backend's chunk) does not apply. Float32 products use TF32 on CUDA when PyTorch's
float32 matmuls do (`trainer.tf32`, `torch.backends.cuda.matmul.allow_tf32`), as the torch
backend's would. This module imports triton; `backends.py` imports it only when a kernel is
about to run.
"""

import math
from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from seq2seq.model.attention import triton_kernels as kernels
from seq2seq.model.attention.base import SMALLEST_DENOMINATOR, float32_region
from seq2seq.model.attention.feature_maps import FavorFeatureMap, FeatureMap

KINDS = {"favor": 0, "elu": 1, "relu": 2}
"""Feature-map kinds the kernels compute, as the kernels' `KIND` constants."""


@dataclass(frozen=True)
class Tiles:
    """A kernel's rows per chunk, features per block, warps and pipeline stages."""

    chunk: int
    features: int
    warps: int
    stages: int = 2


CAUSAL_FORWARD = Tiles(chunk=32, features=64, warps=8)
CAUSAL_BACKWARD = Tiles(chunk=32, features=32, warps=8)
NON_CAUSAL = Tiles(chunk=64, features=64, warps=8)
"""Chosen from ptxas's reports for sm_90 at Dh = 64, the kernels compiled without a GPU and
never timed: the largest tiles that keep each kernel within 255 registers per thread with
no spills (the two causal backward kernels spill up to about 200 bytes) and under 100 KB of
shared memory, for bf16 and fp32 inputs. Chunks of 64 rows spilled 300 to 1,900 bytes in
the causal kernels, and their fp32 backward needed 247 KB of shared memory with 3 stages,
more than a Hopper block may have. Tune them on a GPU."""


@dataclass(frozen=True)
class _Shape:
    """The launch geometry of one call."""

    batch: int
    heads: int
    head_dim: int
    num_features: int
    block_d: int
    block_m: int
    precision: str
    kind: int
    tiles: Tiles

    @property
    def chunk(self) -> int:
        return self.tiles.chunk

    @property
    def feature_blocks(self) -> int:
        return triton.cdiv(self.num_features, self.block_m)

    @property
    def padded_features(self) -> int:
        return self.feature_blocks * self.block_m

    @property
    def half_scale_sq(self) -> float:
        """`s^2 / 2` of FAVOR+'s key offset `s^2 |x|^2 / 2`, s = Dh^-1/4."""
        return 0.5 * self.head_dim**-0.5

    @property
    def log_sqrt_m(self) -> float:
        return 0.5 * math.log(self.num_features)

    def constants(self) -> dict[str, object]:
        return {
            "KIND": self.kind,
            "PRECISION": self.precision,
            "BLOCK_C": self.chunk,
            "BLOCK_D": self.block_d,
            "BLOCK_M": self.block_m,
            "num_warps": self.tiles.warps,
            "num_stages": self.tiles.stages,
        }


def _shape(q: Tensor, projection: Tensor | None, kind: str, tiles: Tiles) -> _Shape:
    if kind not in KINDS:
        raise ValueError(
            f"model.linear.feature_map={kind!r} has no Triton kernel; choose one of "
            f"{tuple(KINDS)}, or model.linear.backend='torch'"
        )
    batch, heads, _, head_dim = q.shape
    num_features = head_dim if projection is None else projection.shape[0]
    block_d = max(16, triton.next_power_of_2(head_dim))
    # Elementwise maps have one feature per column of x: their blocks are column blocks.
    block_m = (
        min(tiles.features, block_d)
        if projection is None
        else min(tiles.features, max(16, triton.next_power_of_2(num_features)))
    )
    tf32 = q.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return _Shape(
        batch=batch,
        heads=heads,
        head_dim=head_dim,
        num_features=num_features,
        block_d=block_d,
        block_m=block_m,
        precision="tf32" if tf32 else "ieee",
        kind=KINDS[kind],
        tiles=tiles,
    )


def _rows(x: Tensor) -> Tensor:
    """The kernels index rows by strides but need unit stride along the head dim."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _strides(x: Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _mask_bytes(key_padding_mask: Tensor | None, fallback: Tensor) -> Tensor:
    return fallback if key_padding_mask is None else key_padding_mask.to(torch.uint8).contiguous()


def _row_max(
    x: Tensor, projection: Tensor, mask: Tensor | None, shape: _Shape, *, is_key: bool
) -> Tensor:
    """`(B, H, L)` float32: each row's largest FAVOR+ logit (see `row_max_kernel`)."""
    length = x.shape[2]
    out = torch.empty(x.shape[:3], dtype=torch.float32, device=x.device)
    if out.numel():
        kernels.row_max_kernel[(triton.cdiv(length, shape.chunk), shape.batch * shape.heads)](
            x,
            *_strides(x),
            projection,
            _mask_bytes(mask, out),
            out,
            shape.heads,
            length,
            shape.head_dim,
            shape.num_features,
            shape.half_scale_sq,
            shape.log_sqrt_m,
            IS_KEY=is_key,
            HAS_MASK=mask is not None,
            **shape.constants(),
        )
    return out


def _query_max(q: Tensor, projection: Tensor | None, shape: _Shape) -> Tensor:
    """FAVOR+'s per-query stabilizer; an empty tensor for the elementwise maps."""
    if projection is None:
        return q.new_empty((0,), dtype=torch.float32)
    return _row_max(q, projection, None, shape, is_key=False)


# Causal: forward ----------------------------------------------------------------------------


@torch.library.custom_op(
    "seq2seq::causal_linear_attention",
    mutates_args=(),
    schema="(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, Tensor? projection, "
    "str kind) -> (Tensor, Tensor, Tensor)",
)
def _causal_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """`(out, den, query_max)`: `out` in v's dtype, `den: (B, H, L)` float32."""
    q, k, v = _rows(q), _rows(k), _rows(v)
    shape = _shape(q, projection, kind, CAUSAL_FORWARD)
    length = q.shape[2]
    numerator = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    den = torch.zeros(q.shape[:3], dtype=torch.float32, device=q.device)
    query_max = _query_max(q, projection, shape)
    if numerator.numel():
        kernels.causal_forward_kernel[(shape.feature_blocks, shape.batch * shape.heads)](
            q,
            k,
            v,
            *_strides(q),
            *_strides(k),
            *_strides(v),
            den if projection is None else projection,
            _mask_bytes(key_padding_mask, den),
            den if projection is None else query_max,
            numerator,
            den,
            shape.heads,
            length,
            shape.head_dim,
            shape.num_features,
            shape.half_scale_sq,
            shape.log_sqrt_m,
            HAS_MASK=key_padding_mask is not None,
            **shape.constants(),
        )
    # In place: numerator becomes the output (or is cast to it), no second float32 copy.
    weighted = (den > 0)[..., None]
    out = numerator.div_(den.clamp_min(SMALLEST_DENOMINATOR)[..., None]).mul_(weighted)
    return out.to(v.dtype), den, query_max


@_causal_forward.register_fake
def _(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    query_max_shape = (0,) if projection is None else q.shape[:3]
    return (
        q.new_empty(q.shape, dtype=v.dtype),
        q.new_empty(q.shape[:3], dtype=torch.float32),
        q.new_empty(query_max_shape, dtype=torch.float32),
    )


# Causal: backward ---------------------------------------------------------------------------


@torch.library.custom_op(
    "seq2seq::causal_linear_attention_backward",
    mutates_args=(),
    schema="(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, "
    "Tensor? projection, Tensor out, Tensor den, Tensor query_max, str kind) "
    "-> (Tensor, Tensor, Tensor)",
)
def _causal_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    out: Tensor,
    den: Tensor,
    query_max: Tensor,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """`(dq, dk, dv)` in the dtypes of q, k, v."""
    grad_out, q, k, v, out = (_rows(x) for x in (grad_out, q, k, v, out))
    shape = _shape(q, projection, kind, CAUSAL_BACKWARD)
    length = q.shape[2]
    grad_q, grad_k, grad_v = (
        torch.zeros(q.shape, dtype=torch.float32, device=q.device) for _ in range(3)
    )
    if grad_q.numel():
        grid = (shape.feature_blocks, shape.batch * shape.heads)
        common = (
            q,
            k,
            v,
            out,
            grad_out,
            *_strides(q),
            *_strides(k),
            *_strides(v),
            *_strides(out),
            *_strides(grad_out),
            den if projection is None else projection,
            _mask_bytes(key_padding_mask, den),
            den if projection is None else query_max,
            den,
        )
        sizes = (
            shape.heads,
            length,
            shape.head_dim,
            shape.num_features,
            shape.half_scale_sq,
            shape.log_sqrt_m,
        )
        constants = {
            "HAS_MASK": key_padding_mask is not None,
            "SMALLEST": SMALLEST_DENOMINATOR,
            **shape.constants(),
        }
        kernels.causal_backward_query_kernel[grid](*common, grad_q, *sizes, **constants)
        kernels.causal_backward_key_kernel[grid](*common, grad_k, grad_v, *sizes, **constants)
    return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype)


@_causal_backward.register_fake
def _(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    out: Tensor,
    den: Tensor,
    query_max: Tensor,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _causal_setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    q, k, v, key_padding_mask, projection, kind = inputs
    out, den, query_max = output
    ctx.save_for_backward(q, k, v, key_padding_mask, projection, out, den, query_max)
    ctx.kind = kind  # type: ignore[attr-defined]


def _causal_gradient(
    ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, *_: Tensor
) -> tuple[Tensor | None, ...]:
    q, k, v, key_padding_mask, projection, out, den, query_max = ctx.saved_tensors  # type: ignore[attr-defined]
    grad_q, grad_k, grad_v = _causal_backward(
        grad_out,
        q,
        k,
        v,
        key_padding_mask,
        projection,
        out,
        den,
        query_max,
        ctx.kind,  # type: ignore[attr-defined]
    )
    return grad_q, grad_k, grad_v, None, None, None


_causal_forward.register_autograd(_causal_gradient, setup_context=_causal_setup)


# Non-causal: forward ------------------------------------------------------------------------


@torch.library.custom_op(
    "seq2seq::linear_attention",
    mutates_args=(),
    schema="(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, Tensor? projection, "
    "str kind) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def _linear_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`(out, den, query_max, state, normalizer, key_shift)`; the state `(B * H, M, BD)` and
    normalizer `(B * H, M)` float32 over the padded feature blocks, `key_shift: (B * H,)`."""
    q, k, v = _rows(q), _rows(k), _rows(v)
    shape = _shape(q, projection, kind, NON_CAUSAL)
    query_length, key_length = q.shape[2], k.shape[2]
    heads = shape.batch * shape.heads
    state = torch.empty(
        heads, shape.padded_features, shape.block_d, dtype=torch.float32, device=q.device
    )
    normalizer = torch.empty(heads, shape.padded_features, dtype=torch.float32, device=q.device)
    # float32, cast by PyTorch below: Triton's interpreter truncates float32 -> bf16 stores
    # rather than rounding to nearest, and the backward pass reads the rounded output.
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    den = torch.zeros(q.shape[:3], dtype=torch.float32, device=q.device)
    query_max = _query_max(q, projection, shape)
    if projection is None:
        key_shift = normalizer.new_zeros((heads,))
    else:
        # One shift for all keys of a head (the feature map's `all_keys`): the largest logit
        # of any real key, or 0 when there is none.
        shift = _row_max(k, projection, key_padding_mask, shape, is_key=True)
        shift = shift.reshape(heads, key_length).amax(-1) if key_length else shift.new_zeros(heads)
        key_shift = torch.where(shift.isfinite(), shift, 0.0).contiguous()
    if heads == 0:
        return out.to(v.dtype), den, query_max, state, normalizer, key_shift
    kernels.key_state_kernel[(shape.feature_blocks, heads)](
        k,
        v,
        *_strides(k),
        *_strides(v),
        den if projection is None else projection,
        _mask_bytes(key_padding_mask, den),
        key_shift,
        state,
        normalizer,
        shape.heads,
        key_length,
        shape.head_dim,
        shape.num_features,
        shape.padded_features,
        shape.half_scale_sq,
        shape.log_sqrt_m,
        HAS_MASK=key_padding_mask is not None,
        **shape.constants(),
    )
    if query_length:
        kernels.linear_forward_kernel[(triton.cdiv(query_length, shape.chunk), heads)](
            q,
            out,
            *_strides(q),
            *_strides(out),
            den if projection is None else projection,
            den if projection is None else query_max,
            state,
            normalizer,
            den,
            shape.heads,
            query_length,
            shape.head_dim,
            shape.num_features,
            shape.padded_features,
            SMALLEST=SMALLEST_DENOMINATOR,
            **shape.constants(),
        )
    return out.to(v.dtype), den, query_max, state, normalizer, key_shift


@_linear_forward.register_fake
def _(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    shape = _shape(q, projection, kind, NON_CAUSAL)
    heads = shape.batch * shape.heads
    query_max_shape = (0,) if projection is None else q.shape[:3]
    return (
        q.new_empty(q.shape, dtype=v.dtype),
        q.new_empty(q.shape[:3], dtype=torch.float32),
        q.new_empty(query_max_shape, dtype=torch.float32),
        q.new_empty((heads, shape.padded_features, shape.block_d), dtype=torch.float32),
        q.new_empty((heads, shape.padded_features), dtype=torch.float32),
        q.new_empty((heads,), dtype=torch.float32),
    )


# Non-causal: backward -----------------------------------------------------------------------


@torch.library.custom_op(
    "seq2seq::linear_attention_backward",
    mutates_args=(),
    schema="(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, "
    "Tensor? projection, Tensor out, Tensor den, Tensor query_max, Tensor state, "
    "Tensor normalizer, Tensor key_shift, str kind) -> (Tensor, Tensor, Tensor)",
)
def _linear_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    out: Tensor,
    den: Tensor,
    query_max: Tensor,
    state: Tensor,
    normalizer: Tensor,
    key_shift: Tensor,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    grad_out, q, k, v, out = (_rows(x) for x in (grad_out, q, k, v, out))
    shape = _shape(q, projection, kind, NON_CAUSAL)
    query_length, key_length = q.shape[2], k.shape[2]
    heads = shape.batch * shape.heads
    grad_q = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
    grad_k = torch.zeros(k.shape, dtype=k.dtype, device=k.device)
    grad_v = torch.zeros(v.shape, dtype=v.dtype, device=v.device)
    grad_state = torch.zeros_like(state)
    grad_normalizer = torch.zeros_like(normalizer)
    w = den if projection is None else projection
    query_max_or_any = den if projection is None else query_max
    if heads and query_length:
        kernels.linear_backward_state_kernel[(shape.feature_blocks, heads)](
            q,
            out,
            grad_out,
            *_strides(q),
            *_strides(out),
            *_strides(grad_out),
            w,
            query_max_or_any,
            den,
            grad_state,
            grad_normalizer,
            shape.heads,
            query_length,
            shape.head_dim,
            shape.num_features,
            shape.padded_features,
            SMALLEST=SMALLEST_DENOMINATOR,
            **shape.constants(),
        )
        kernels.linear_backward_query_kernel[(triton.cdiv(query_length, shape.chunk), heads)](
            q,
            out,
            grad_out,
            grad_q,
            *_strides(q),
            *_strides(out),
            *_strides(grad_out),
            *_strides(grad_q),
            w,
            query_max_or_any,
            den,
            state,
            normalizer,
            shape.heads,
            query_length,
            shape.head_dim,
            shape.num_features,
            shape.padded_features,
            SMALLEST=SMALLEST_DENOMINATOR,
            **shape.constants(),
        )
    if heads and key_length:
        kernels.linear_backward_key_kernel[(triton.cdiv(key_length, shape.chunk), heads)](
            k,
            v,
            grad_k,
            grad_v,
            *_strides(k),
            *_strides(v),
            *_strides(grad_k),
            *_strides(grad_v),
            w,
            _mask_bytes(key_padding_mask, den),
            key_shift,
            grad_state,
            grad_normalizer,
            shape.heads,
            key_length,
            shape.head_dim,
            shape.num_features,
            shape.padded_features,
            shape.half_scale_sq,
            shape.log_sqrt_m,
            HAS_MASK=key_padding_mask is not None,
            **shape.constants(),
        )
    return grad_q, grad_k, grad_v


@_linear_backward.register_fake
def _(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    projection: Tensor | None,
    out: Tensor,
    den: Tensor,
    query_max: Tensor,
    state: Tensor,
    normalizer: Tensor,
    key_shift: Tensor,
    kind: str,
) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _linear_setup(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    q, k, v, key_padding_mask, projection, kind = inputs
    out, den, query_max, state, normalizer, key_shift = output
    ctx.save_for_backward(
        q, k, v, key_padding_mask, projection, out, den, query_max, state, normalizer, key_shift
    )
    ctx.kind = kind  # type: ignore[attr-defined]


def _linear_gradient(
    ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor, *_: Tensor
) -> tuple[Tensor | None, ...]:
    saved = ctx.saved_tensors  # type: ignore[attr-defined]
    grad_q, grad_k, grad_v = _linear_backward(
        grad_out,
        *saved,
        ctx.kind,  # type: ignore[attr-defined]
    )
    return grad_q, grad_k, grad_v, None, None, None


_linear_forward.register_autograd(_linear_gradient, setup_context=_linear_setup)


# Entry points -------------------------------------------------------------------------------


def _feature_spec(feature_map: FeatureMap) -> tuple[str, Tensor | None]:
    """The kernels' description of `feature_map`: its kind and FAVOR+'s scaled projection."""
    if isinstance(feature_map, FavorFeatureMap):
        return "favor", feature_map.scaled_projection().contiguous()
    return feature_map.kind, None


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, feature_map: FeatureMap
) -> Tensor:
    """Non-causal linear attention through the kernels, `(B, H, Lq, Dh)` in v's dtype.

    `q: (B, H, Lq, Dh)`, `k, v: (B, H, Lk, Dh)`, `key_padding_mask: (B, Lk)` True where real."""
    kind, projection = _feature_spec(feature_map)
    with float32_region(q.device):
        out = _linear_forward(q, k, v, key_padding_mask, projection, kind)[0]
    return out


def causal_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature_map: FeatureMap,
) -> Tensor:
    """Causal linear attention through the kernels, `(B, H, L, Dh)` in v's dtype.

    `q, k, v: (B, H, L, Dh)`, `key_padding_mask: (B, L)` True where real."""
    kind, projection = _feature_spec(feature_map)
    with float32_region(q.device):
        out = _causal_forward(q, k, v, key_padding_mask, projection, kind)[0]
    return out
