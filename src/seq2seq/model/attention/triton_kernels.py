"""Triton kernels of the linear kinds, forward and backward, that form the features on chip.

Neither `phi(q)` nor `phi(k)` ever reaches memory: a kernel loads a chunk of C rows of q or k
and computes a block of BM features from it (FAVOR+: `exp(x W'^T - shift)` with the
projection block `W'` (BM x Dh) held on chip; elu and relu: the map applied to BM columns).
The backward pass recomputes them the same way. Kernels accumulate in float32 whatever the
input dtype (bf16, fp16 or fp32).

Causal kernels give each program one feature block of one (batch, head) and walk the
chunks in order, carrying that block's state `S = sum phi(k) v^T` (BM x Dh) and normalizer
`z = sum phi(k)` (BM) on chip: `out_chunk = mask(phi(q) phi(k)^T) v + phi(q) S`. The
feature blocks' shares of the numerator and denominator (and of dq, dk, dv in backward) are
sums, so programs add them into float32 buffers with atomics; elu and relu features belong
to one column of x each, so their dq and dk are stored without. The backward pass runs two
kernels: one walks forwards for dq (it needs the states before each chunk), one backwards for
dk and dv (they need the sums `phi(q)^T G` over the chunks after). The non-causal kernels
first reduce the keys to the `(m, Dh)` state, then give each program one chunk of rows.

Notation: G is the gradient with respect to `[numerator, denominator]`,
`G = [dout / den, -(dout . out) / den]` (`gnum`, `gden`), zero where the denominator is 0,
exactly as autograd differentiates the PyTorch backend's `normalized`.
"""

from __future__ import annotations

import triton
import triton.language as tl

FAVOR: tl.constexpr = tl.constexpr(0)
ELU: tl.constexpr = tl.constexpr(1)
RELU: tl.constexpr = tl.constexpr(2)


@triton.jit
def _head_offset(pid_bh, heads, stride_b, stride_h):
    """Offset of (batch, head) `pid_bh` in a (B, H, L, X) tensor, in int64."""
    return (pid_bh // heads).to(tl.int64) * stride_b + (pid_bh % heads).to(tl.int64) * stride_h


@triton.jit
def _load_tile(ptr, rows, cols, n_rows, n_cols, stride_row):
    """float32 tile `(len(rows), len(cols))` of a row-major matrix; zeros outside it."""
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tile = tl.load(ptr + rows[:, None] * stride_row + cols[None, :], mask=inside, other=0.0)
    return tile.to(tl.float32)


@triton.jit
def _store_tile(ptr, tile, rows, cols, n_rows, n_cols, stride_row):
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(
        ptr + rows[:, None] * stride_row + cols[None, :],
        tile.to(ptr.dtype.element_ty),
        mask=inside,
    )


@triton.jit
def _add_tile(ptr, tile, rows, cols, n_rows, n_cols, stride_row):
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.atomic_add(ptr + rows[:, None] * stride_row + cols[None, :], tile, mask=inside)


@triton.jit
def _projection_block_t(w_ptr, features, dims, head_dim, num_features):
    """`(BD, BM)` block of the scaled projection `W': (m, Dh)`, transposed; zeros outside."""
    inside = (dims[:, None] < head_dim) & (features[None, :] < num_features)
    return tl.load(w_ptr + features[None, :] * head_dim + dims[:, None], mask=inside, other=0.0)


@triton.jit
def _features(x, x_cols, w_t, shift, valid, KIND: tl.constexpr, PRECISION: tl.constexpr):
    """`(C, BM)` features of one block, zero where not `valid`.

    FAVOR+ reads `x: (C, BD)`, `w_t: (BD, BM)` and the per-row `shift: (C,)` (a query's max,
    or a key's `|x'|^2 / 2 + log sqrt(m)`); elu and relu read the block's columns `x_cols`."""
    if KIND == FAVOR:
        phi = tl.exp(tl.dot(x, w_t, input_precision=PRECISION) - shift[:, None])
    elif KIND == ELU:
        phi = tl.where(x_cols > 0, x_cols + 1.0, tl.exp(x_cols))
    else:
        phi = tl.maximum(x_cols, 0.0)
    return tl.where(valid, phi, 0.0)


@triton.jit
def _derivative(phi, KIND: tl.constexpr):
    """f'(x) of the elementwise maps from `phi = f(x)` alone, 0 where phi was zeroed: elu + 1
    has slope min(phi, 1) (x + 1 > 1 for x > 0, exp(x) <= 1 elsewhere), relu phi > 0."""
    if KIND == ELU:  # noqa: SIM108 (a constexpr branch, resolved when Triton compiles)
        slope = tl.minimum(phi, 1.0)
    else:
        slope = tl.where(phi > 0, 1.0, 0.0)
    return slope


@triton.jit
def _output_gradient(grad_out, out, den, SMALLEST: tl.constexpr):
    """`gnum: (C, BD)`, `gden: (C,)`: the gradient with respect to numerator and denominator."""
    gnum = tl.where(den[:, None] > 0, grad_out / tl.maximum(den, SMALLEST)[:, None], 0.0)
    gden = tl.where(den >= SMALLEST, -tl.sum(gnum * out, 1), 0.0)
    return gnum, gden


@triton.jit
def _key_valid(mask_ptr, batch, rows, length, HAS_MASK: tl.constexpr):
    """`(C,)`: rows inside the sequence and, with a padding mask, real."""
    valid = rows < length
    if HAS_MASK:
        real = tl.load(mask_ptr + batch.to(tl.int64) * length + rows, mask=valid, other=0)
        valid = valid & (real != 0)
    return valid


@triton.jit
def row_max_kernel(
    x_ptr,
    stride_xb,
    stride_xh,
    stride_xl,
    w_ptr,
    mask_ptr,
    max_ptr,
    heads,
    length,
    head_dim,
    num_features,
    half_scale_sq,
    log_sqrt_m,
    IS_KEY: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """FAVOR+ only: each row's largest logit over all m features, `(B * H, L)` float32.

    Queries: of `x W'^T` (the query's stabilizer; any per-row term cancels in it). Keys: of
    the full logit `x W'^T - |x'|^2 / 2 - log sqrt(m)`, -inf for padded keys (the
    non-causal kind's shared shift is the max of these)."""
    pid_c = tl.program_id(0)
    pid_bh = tl.program_id(1)
    rows = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    x = _load_tile(
        x_ptr + _head_offset(pid_bh, heads, stride_xb, stride_xh),
        rows,
        dims,
        length,
        head_dim,
        stride_xl,
    )
    best = tl.full((BLOCK_C,), float("-inf"), tl.float32)
    for start in range(0, num_features, BLOCK_M):
        features = start + tl.arange(0, BLOCK_M)
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
        logits = tl.dot(x, w_t, input_precision=PRECISION)
        logits = tl.where(features[None, :] < num_features, logits, float("-inf"))
        best = tl.maximum(best, tl.max(logits, 1))
    if IS_KEY:
        best = best - (half_scale_sq * tl.sum(x * x, 1) + log_sqrt_m)
        valid = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
        best = tl.where(valid, best, float("-inf"))
    tl.store(max_ptr + pid_bh.to(tl.int64) * length + rows, best, mask=rows < length)


@triton.jit
def causal_forward_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_kb,
    stride_kh,
    stride_kl,
    stride_vb,
    stride_vh,
    stride_vl,
    w_ptr,
    mask_ptr,
    query_max_ptr,
    num_ptr,
    den_ptr,
    heads,
    length,
    head_dim,
    num_features,
    half_scale_sq,
    log_sqrt_m,
    KIND: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Grid (feature blocks, B * H). Adds this block's share of the numerator into
    `num: (B, H, L, Dh)` and of the denominator into `den: (B * H, L)`, float32, zeroed."""
    pid_f = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    k_ptr += _head_offset(pid_bh, heads, stride_kb, stride_kh)
    v_ptr += _head_offset(pid_bh, heads, stride_vb, stride_vh)
    num_ptr += pid_bh.to(tl.int64) * length * head_dim
    den_ptr += pid_bh.to(tl.int64) * length
    query_max_ptr += pid_bh.to(tl.int64) * length

    offsets = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    features = pid_f * BLOCK_M + tl.arange(0, BLOCK_M)
    feature_ok = features < num_features
    causal = offsets[:, None] >= offsets[None, :]
    if KIND == FAVOR:
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
    else:
        w_t = 0.0
    state = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    normalizer = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, length, BLOCK_C):
        rows = start + offsets
        row_ok = rows < length
        key_ok = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
        q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
        k = _load_tile(k_ptr, rows, dims, length, head_dim, stride_kl)
        v = _load_tile(v_ptr, rows, dims, length, head_dim, stride_vl)
        if KIND == FAVOR:
            q_cols = q
            k_cols = k
            q_shift = tl.load(query_max_ptr + rows, mask=row_ok, other=0.0)
            k_shift = half_scale_sq * tl.sum(k * k, 1) + log_sqrt_m
        else:
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
            k_cols = _load_tile(k_ptr, rows, features, length, head_dim, stride_kl)
            q_shift = 0.0
            k_shift = 0.0
        q_phi = _features(
            q, q_cols, w_t, q_shift, row_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        k_phi = _features(
            k, k_cols, w_t, k_shift, key_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        scores = tl.dot(q_phi, tl.trans(k_phi), input_precision=PRECISION)
        scores = tl.where(causal, scores, 0.0)
        numerator = tl.dot(scores, v, input_precision=PRECISION)
        numerator += tl.dot(q_phi, state, input_precision=PRECISION)
        denominator = tl.sum(scores, 1) + tl.sum(q_phi * normalizer[None, :], 1)
        _add_tile(num_ptr, numerator, rows, dims, length, head_dim, head_dim)
        tl.atomic_add(den_ptr + rows, denominator, mask=row_ok)
        state += tl.dot(tl.trans(k_phi), v, input_precision=PRECISION)
        normalizer += tl.sum(k_phi, 0)


@triton.jit
def causal_backward_query_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    out_ptr,
    grad_out_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_kb,
    stride_kh,
    stride_kl,
    stride_vb,
    stride_vh,
    stride_vl,
    stride_ob,
    stride_oh,
    stride_ol,
    stride_gb,
    stride_gh,
    stride_gl,
    w_ptr,
    mask_ptr,
    query_max_ptr,
    den_ptr,
    grad_q_ptr,
    heads,
    length,
    head_dim,
    num_features,
    half_scale_sq,
    log_sqrt_m,
    KIND: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    SMALLEST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Grid (feature blocks, B * H), chunks in order: `dphi(q) = mask(G [v, 1]^T) phi(k) +
    G [S, z]^T`, taken back to q into `grad_q: (B, H, L, Dh)` float32 (zeroed: FAVOR+ adds)."""
    pid_f = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    k_ptr += _head_offset(pid_bh, heads, stride_kb, stride_kh)
    v_ptr += _head_offset(pid_bh, heads, stride_vb, stride_vh)
    out_ptr += _head_offset(pid_bh, heads, stride_ob, stride_oh)
    grad_out_ptr += _head_offset(pid_bh, heads, stride_gb, stride_gh)
    grad_q_ptr += pid_bh.to(tl.int64) * length * head_dim
    den_ptr += pid_bh.to(tl.int64) * length
    query_max_ptr += pid_bh.to(tl.int64) * length

    offsets = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    features = pid_f * BLOCK_M + tl.arange(0, BLOCK_M)
    feature_ok = features < num_features
    causal = offsets[:, None] >= offsets[None, :]
    if KIND == FAVOR:
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
    else:
        w_t = 0.0
    state = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    normalizer = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, length, BLOCK_C):
        rows = start + offsets
        row_ok = rows < length
        key_ok = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
        q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
        k = _load_tile(k_ptr, rows, dims, length, head_dim, stride_kl)
        v = _load_tile(v_ptr, rows, dims, length, head_dim, stride_vl)
        gnum, gden = _output_gradient(
            _load_tile(grad_out_ptr, rows, dims, length, head_dim, stride_gl),
            _load_tile(out_ptr, rows, dims, length, head_dim, stride_ol),
            tl.load(den_ptr + rows, mask=row_ok, other=0.0),
            SMALLEST,
        )
        if KIND == FAVOR:
            q_cols = q
            k_cols = k
            q_shift = tl.load(query_max_ptr + rows, mask=row_ok, other=0.0)
            k_shift = half_scale_sq * tl.sum(k * k, 1) + log_sqrt_m
        else:
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
            k_cols = _load_tile(k_ptr, rows, features, length, head_dim, stride_kl)
            q_shift = 0.0
            k_shift = 0.0
        q_phi = _features(
            q, q_cols, w_t, q_shift, row_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        k_phi = _features(
            k, k_cols, w_t, k_shift, key_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        grad_scores = tl.dot(gnum, tl.trans(v), input_precision=PRECISION) + gden[:, None]
        grad_scores = tl.where(causal, grad_scores, 0.0)
        grad_q_phi = tl.dot(grad_scores, k_phi, input_precision=PRECISION)
        grad_q_phi += tl.dot(gnum, tl.trans(state), input_precision=PRECISION)
        grad_q_phi += gden[:, None] * normalizer[None, :]
        if KIND == FAVOR:
            # The query's shift is its own max: a constant of the forward pass.
            grad_q = tl.dot(grad_q_phi * q_phi, tl.trans(w_t), input_precision=PRECISION)
            _add_tile(grad_q_ptr, grad_q, rows, dims, length, head_dim, head_dim)
        else:
            grad_q = grad_q_phi * _derivative(q_phi, KIND)
            _store_tile(grad_q_ptr, grad_q, rows, features, length, head_dim, head_dim)
        state += tl.dot(tl.trans(k_phi), v, input_precision=PRECISION)
        normalizer += tl.sum(k_phi, 0)


@triton.jit
def causal_backward_key_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    out_ptr,
    grad_out_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_kb,
    stride_kh,
    stride_kl,
    stride_vb,
    stride_vh,
    stride_vl,
    stride_ob,
    stride_oh,
    stride_ol,
    stride_gb,
    stride_gh,
    stride_gl,
    w_ptr,
    mask_ptr,
    query_max_ptr,
    den_ptr,
    grad_k_ptr,
    grad_v_ptr,
    heads,
    length,
    head_dim,
    num_features,
    half_scale_sq,
    log_sqrt_m,
    KIND: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    SMALLEST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Grid (feature blocks, B * H), chunks in reverse: with `R = sum phi(q)^T G` over the
    later chunks, `dphi(k) = mask(G [v, 1]^T)^T phi(q) + [v, 1] R^T` and
    `dv = mask(phi(q) phi(k)^T)^T gnum + phi(k) R`, into float32 `grad_k, grad_v` (zeroed)."""
    pid_f = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    k_ptr += _head_offset(pid_bh, heads, stride_kb, stride_kh)
    v_ptr += _head_offset(pid_bh, heads, stride_vb, stride_vh)
    out_ptr += _head_offset(pid_bh, heads, stride_ob, stride_oh)
    grad_out_ptr += _head_offset(pid_bh, heads, stride_gb, stride_gh)
    grad_k_ptr += pid_bh.to(tl.int64) * length * head_dim
    grad_v_ptr += pid_bh.to(tl.int64) * length * head_dim
    den_ptr += pid_bh.to(tl.int64) * length
    query_max_ptr += pid_bh.to(tl.int64) * length

    offsets = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    features = pid_f * BLOCK_M + tl.arange(0, BLOCK_M)
    feature_ok = features < num_features
    causal = offsets[:, None] >= offsets[None, :]
    if KIND == FAVOR:
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
    else:
        w_t = 0.0
    later = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)  # sum phi(q)^T gnum
    later_normalizer = tl.zeros((BLOCK_M,), tl.float32)  # sum phi(q) gden
    chunks = tl.cdiv(length, BLOCK_C)
    for index in range(0, chunks):
        rows = (chunks - 1 - index) * BLOCK_C + offsets
        row_ok = rows < length
        key_ok = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
        q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
        k = _load_tile(k_ptr, rows, dims, length, head_dim, stride_kl)
        v = _load_tile(v_ptr, rows, dims, length, head_dim, stride_vl)
        gnum, gden = _output_gradient(
            _load_tile(grad_out_ptr, rows, dims, length, head_dim, stride_gl),
            _load_tile(out_ptr, rows, dims, length, head_dim, stride_ol),
            tl.load(den_ptr + rows, mask=row_ok, other=0.0),
            SMALLEST,
        )
        if KIND == FAVOR:
            q_cols = q
            k_cols = k
            q_shift = tl.load(query_max_ptr + rows, mask=row_ok, other=0.0)
            k_shift = half_scale_sq * tl.sum(k * k, 1) + log_sqrt_m
        else:
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
            k_cols = _load_tile(k_ptr, rows, features, length, head_dim, stride_kl)
            q_shift = 0.0
            k_shift = 0.0
        k_valid = key_ok[:, None] & feature_ok[None, :]
        q_phi = _features(
            q, q_cols, w_t, q_shift, row_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        k_phi = _features(k, k_cols, w_t, k_shift, k_valid, KIND, PRECISION)
        scores = tl.dot(q_phi, tl.trans(k_phi), input_precision=PRECISION)
        scores = tl.where(causal, scores, 0.0)
        grad_scores = tl.dot(gnum, tl.trans(v), input_precision=PRECISION) + gden[:, None]
        grad_scores = tl.where(causal, grad_scores, 0.0)
        grad_k_phi = tl.dot(tl.trans(grad_scores), q_phi, input_precision=PRECISION)
        grad_k_phi += tl.dot(v, tl.trans(later), input_precision=PRECISION)
        grad_k_phi += later_normalizer[None, :]
        grad_v = tl.dot(tl.trans(scores), gnum, input_precision=PRECISION)
        grad_v += tl.dot(k_phi, later, input_precision=PRECISION)
        _add_tile(grad_v_ptr, grad_v, rows, dims, length, head_dim, head_dim)
        if KIND == FAVOR:
            logit_grad = grad_k_phi * k_phi
            grad_k = tl.dot(logit_grad, tl.trans(w_t), input_precision=PRECISION)
            grad_k -= (2.0 * half_scale_sq) * tl.sum(logit_grad, 1)[:, None] * k
            _add_tile(grad_k_ptr, grad_k, rows, dims, length, head_dim, head_dim)
        else:
            grad_k = grad_k_phi * _derivative(k_phi, KIND)
            _store_tile(grad_k_ptr, grad_k, rows, features, length, head_dim, head_dim)
        later += tl.dot(tl.trans(q_phi), gnum, input_precision=PRECISION)
        later_normalizer += tl.sum(q_phi * gden[:, None], 0)


@triton.jit
def key_state_kernel(
    k_ptr,
    v_ptr,
    stride_kb,
    stride_kh,
    stride_kl,
    stride_vb,
    stride_vh,
    stride_vl,
    w_ptr,
    mask_ptr,
    key_shift_ptr,
    state_ptr,
    normalizer_ptr,
    heads,
    length,
    head_dim,
    num_features,
    padded_features,
    half_scale_sq,
    log_sqrt_m,
    KIND: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Non-causal, grid (feature blocks, B * H): this block's rows of the state
    `sum phi(k) v^T` into `state: (B * H, M, BD)` and of `sum phi(k)` into `normalizer`;
    FAVOR+ keys share the head's shift `key_shift: (B * H,)`."""
    pid_f = tl.program_id(0)
    pid_bh = tl.program_id(1)
    k_ptr += _head_offset(pid_bh, heads, stride_kb, stride_kh)
    v_ptr += _head_offset(pid_bh, heads, stride_vb, stride_vh)

    offsets = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    features = pid_f * BLOCK_M + tl.arange(0, BLOCK_M)
    feature_ok = features < num_features
    if KIND == FAVOR:
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
        head_shift = tl.load(key_shift_ptr + pid_bh)
    else:
        w_t = 0.0
        head_shift = 0.0
    state = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    normalizer = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, length, BLOCK_C):
        rows = start + offsets
        key_ok = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
        k = _load_tile(k_ptr, rows, dims, length, head_dim, stride_kl)
        v = _load_tile(v_ptr, rows, dims, length, head_dim, stride_vl)
        if KIND == FAVOR:
            k_cols = k
            k_shift = half_scale_sq * tl.sum(k * k, 1) + log_sqrt_m + head_shift
        else:
            k_cols = _load_tile(k_ptr, rows, features, length, head_dim, stride_kl)
            k_shift = 0.0
        k_phi = _features(
            k, k_cols, w_t, k_shift, key_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        state += tl.dot(tl.trans(k_phi), v, input_precision=PRECISION)
        normalizer += tl.sum(k_phi, 0)
    base = pid_bh.to(tl.int64) * padded_features
    _store_tile(
        state_ptr + base * BLOCK_D, state, features, dims, padded_features, BLOCK_D, BLOCK_D
    )
    tl.store(normalizer_ptr + base + features, normalizer)


@triton.jit
def linear_forward_kernel(
    q_ptr,
    out_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_ob,
    stride_oh,
    stride_ol,
    w_ptr,
    query_max_ptr,
    state_ptr,
    normalizer_ptr,
    den_ptr,
    heads,
    length,
    head_dim,
    num_features,
    padded_features,
    KIND: tl.constexpr,
    PRECISION: tl.constexpr,
    SMALLEST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Non-causal, grid (query chunks, B * H): `out = phi(q) S / (phi(q) . z)` over all
    feature blocks; the denominators into `den: (B * H, Lq)`."""
    pid_c = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    out_ptr += _head_offset(pid_bh, heads, stride_ob, stride_oh)
    base = pid_bh.to(tl.int64) * padded_features

    rows = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < length
    dims = tl.arange(0, BLOCK_D)
    q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
    if KIND == FAVOR:
        q_shift = tl.load(
            query_max_ptr + pid_bh.to(tl.int64) * length + rows, mask=row_ok, other=0.0
        )
    else:
        q_shift = 0.0
    numerator = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
    denominator = tl.zeros((BLOCK_C,), tl.float32)
    for start in range(0, num_features, BLOCK_M):
        features = start + tl.arange(0, BLOCK_M)
        if KIND == FAVOR:
            w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
            q_cols = q
        else:
            w_t = 0.0
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
        q_phi = _features(
            q,
            q_cols,
            w_t,
            q_shift,
            row_ok[:, None] & (features < num_features)[None, :],
            KIND,
            PRECISION,
        )
        state = _load_tile(
            state_ptr + base * BLOCK_D, features, dims, padded_features, BLOCK_D, BLOCK_D
        )
        normalizer = tl.load(normalizer_ptr + base + features)
        numerator += tl.dot(q_phi, state, input_precision=PRECISION)
        denominator += tl.sum(q_phi * normalizer[None, :], 1)
    out = tl.where(
        denominator[:, None] > 0, numerator / tl.maximum(denominator, SMALLEST)[:, None], 0.0
    )
    _store_tile(out_ptr, out, rows, dims, length, head_dim, stride_ol)
    tl.store(den_ptr + pid_bh.to(tl.int64) * length + rows, denominator, mask=row_ok)


@triton.jit
def linear_backward_state_kernel(
    q_ptr,
    out_ptr,
    grad_out_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_ob,
    stride_oh,
    stride_ol,
    stride_gb,
    stride_gh,
    stride_gl,
    w_ptr,
    query_max_ptr,
    den_ptr,
    grad_state_ptr,
    grad_normalizer_ptr,
    heads,
    length,
    head_dim,
    num_features,
    padded_features,
    KIND: tl.constexpr,
    PRECISION: tl.constexpr,
    SMALLEST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Non-causal, grid (feature blocks, B * H): the state's gradient `phi(q)^T gnum` into
    `grad_state: (B * H, M, BD)` and the normalizer's `phi(q)^T gden`."""
    pid_f = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    out_ptr += _head_offset(pid_bh, heads, stride_ob, stride_oh)
    grad_out_ptr += _head_offset(pid_bh, heads, stride_gb, stride_gh)
    den_ptr += pid_bh.to(tl.int64) * length
    query_max_ptr += pid_bh.to(tl.int64) * length

    offsets = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    features = pid_f * BLOCK_M + tl.arange(0, BLOCK_M)
    feature_ok = features < num_features
    if KIND == FAVOR:
        w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
    else:
        w_t = 0.0
    grad_state = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    grad_normalizer = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, length, BLOCK_C):
        rows = start + offsets
        row_ok = rows < length
        q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
        gnum, gden = _output_gradient(
            _load_tile(grad_out_ptr, rows, dims, length, head_dim, stride_gl),
            _load_tile(out_ptr, rows, dims, length, head_dim, stride_ol),
            tl.load(den_ptr + rows, mask=row_ok, other=0.0),
            SMALLEST,
        )
        if KIND == FAVOR:
            q_cols = q
            q_shift = tl.load(query_max_ptr + rows, mask=row_ok, other=0.0)
        else:
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
            q_shift = 0.0
        q_phi = _features(
            q, q_cols, w_t, q_shift, row_ok[:, None] & feature_ok[None, :], KIND, PRECISION
        )
        grad_state += tl.dot(tl.trans(q_phi), gnum, input_precision=PRECISION)
        grad_normalizer += tl.sum(q_phi * gden[:, None], 0)
    base = pid_bh.to(tl.int64) * padded_features
    _store_tile(
        grad_state_ptr + base * BLOCK_D,
        grad_state,
        features,
        dims,
        padded_features,
        BLOCK_D,
        BLOCK_D,
    )
    tl.store(grad_normalizer_ptr + base + features, grad_normalizer)


@triton.jit
def linear_backward_query_kernel(
    q_ptr,
    out_ptr,
    grad_out_ptr,
    grad_q_ptr,
    stride_qb,
    stride_qh,
    stride_ql,
    stride_ob,
    stride_oh,
    stride_ol,
    stride_gb,
    stride_gh,
    stride_gl,
    stride_dqb,
    stride_dqh,
    stride_dql,
    w_ptr,
    query_max_ptr,
    den_ptr,
    state_ptr,
    normalizer_ptr,
    heads,
    length,
    head_dim,
    num_features,
    padded_features,
    KIND: tl.constexpr,
    PRECISION: tl.constexpr,
    SMALLEST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Non-causal, grid (query chunks, B * H): `dphi(q) = gnum S^T + gden z^T` over all
    feature blocks, taken back to q, stored in grad_q's dtype."""
    pid_c = tl.program_id(0)
    pid_bh = tl.program_id(1)
    q_ptr += _head_offset(pid_bh, heads, stride_qb, stride_qh)
    out_ptr += _head_offset(pid_bh, heads, stride_ob, stride_oh)
    grad_out_ptr += _head_offset(pid_bh, heads, stride_gb, stride_gh)
    grad_q_ptr += _head_offset(pid_bh, heads, stride_dqb, stride_dqh)
    base = pid_bh.to(tl.int64) * padded_features

    rows = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < length
    dims = tl.arange(0, BLOCK_D)
    q = _load_tile(q_ptr, rows, dims, length, head_dim, stride_ql)
    gnum, gden = _output_gradient(
        _load_tile(grad_out_ptr, rows, dims, length, head_dim, stride_gl),
        _load_tile(out_ptr, rows, dims, length, head_dim, stride_ol),
        tl.load(den_ptr + pid_bh.to(tl.int64) * length + rows, mask=row_ok, other=0.0),
        SMALLEST,
    )
    if KIND == FAVOR:
        q_shift = tl.load(
            query_max_ptr + pid_bh.to(tl.int64) * length + rows, mask=row_ok, other=0.0
        )
    else:
        q_shift = 0.0
    grad_q = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
    for start in range(0, num_features, BLOCK_M):
        features = start + tl.arange(0, BLOCK_M)
        if KIND == FAVOR:
            w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
            q_cols = q
        else:
            w_t = 0.0
            q_cols = _load_tile(q_ptr, rows, features, length, head_dim, stride_ql)
        q_phi = _features(
            q,
            q_cols,
            w_t,
            q_shift,
            row_ok[:, None] & (features < num_features)[None, :],
            KIND,
            PRECISION,
        )
        state = _load_tile(
            state_ptr + base * BLOCK_D, features, dims, padded_features, BLOCK_D, BLOCK_D
        )
        normalizer = tl.load(normalizer_ptr + base + features)
        grad_q_phi = tl.dot(gnum, tl.trans(state), input_precision=PRECISION)
        grad_q_phi += gden[:, None] * normalizer[None, :]
        if KIND == FAVOR:
            grad_q += tl.dot(grad_q_phi * q_phi, tl.trans(w_t), input_precision=PRECISION)
        else:
            block = grad_q_phi * _derivative(q_phi, KIND)
            _store_tile(grad_q_ptr, block, rows, features, length, head_dim, stride_dql)
    if KIND == FAVOR:
        _store_tile(grad_q_ptr, grad_q, rows, dims, length, head_dim, stride_dql)


@triton.jit
def linear_backward_key_kernel(
    k_ptr,
    v_ptr,
    grad_k_ptr,
    grad_v_ptr,
    stride_kb,
    stride_kh,
    stride_kl,
    stride_vb,
    stride_vh,
    stride_vl,
    stride_dkb,
    stride_dkh,
    stride_dkl,
    stride_dvb,
    stride_dvh,
    stride_dvl,
    w_ptr,
    mask_ptr,
    key_shift_ptr,
    grad_state_ptr,
    grad_normalizer_ptr,
    heads,
    length,
    head_dim,
    num_features,
    padded_features,
    half_scale_sq,
    log_sqrt_m,
    KIND: tl.constexpr,
    HAS_MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """Non-causal, grid (key chunks, B * H): `dphi(k) = v dS^T + dz`, `dv = phi(k) dS` over
    all feature blocks, stored in grad_k's and grad_v's dtypes."""
    pid_c = tl.program_id(0)
    pid_bh = tl.program_id(1)
    k_ptr += _head_offset(pid_bh, heads, stride_kb, stride_kh)
    v_ptr += _head_offset(pid_bh, heads, stride_vb, stride_vh)
    grad_k_ptr += _head_offset(pid_bh, heads, stride_dkb, stride_dkh)
    grad_v_ptr += _head_offset(pid_bh, heads, stride_dvb, stride_dvh)
    base = pid_bh.to(tl.int64) * padded_features

    rows = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    key_ok = _key_valid(mask_ptr, pid_bh // heads, rows, length, HAS_MASK)
    k = _load_tile(k_ptr, rows, dims, length, head_dim, stride_kl)
    v = _load_tile(v_ptr, rows, dims, length, head_dim, stride_vl)
    if KIND == FAVOR:
        k_shift = half_scale_sq * tl.sum(k * k, 1) + log_sqrt_m + tl.load(key_shift_ptr + pid_bh)
    else:
        k_shift = 0.0
    grad_k = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
    grad_v = tl.zeros((BLOCK_C, BLOCK_D), tl.float32)
    for start in range(0, num_features, BLOCK_M):
        features = start + tl.arange(0, BLOCK_M)
        k_valid = key_ok[:, None] & (features < num_features)[None, :]
        if KIND == FAVOR:
            w_t = _projection_block_t(w_ptr, features, dims, head_dim, num_features)
            k_cols = k
        else:
            w_t = 0.0
            k_cols = _load_tile(k_ptr, rows, features, length, head_dim, stride_kl)
        k_phi = _features(k, k_cols, w_t, k_shift, k_valid, KIND, PRECISION)
        grad_state = _load_tile(
            grad_state_ptr + base * BLOCK_D, features, dims, padded_features, BLOCK_D, BLOCK_D
        )
        grad_normalizer = tl.load(grad_normalizer_ptr + base + features)
        grad_k_phi = tl.dot(v, tl.trans(grad_state), input_precision=PRECISION)
        grad_k_phi += grad_normalizer[None, :]
        grad_v += tl.dot(k_phi, grad_state, input_precision=PRECISION)
        if KIND == FAVOR:
            logit_grad = grad_k_phi * k_phi
            grad_k += tl.dot(logit_grad, tl.trans(w_t), input_precision=PRECISION)
            grad_k -= (2.0 * half_scale_sq) * tl.sum(logit_grad, 1)[:, None] * k
        else:
            block = grad_k_phi * _derivative(k_phi, KIND)
            _store_tile(grad_k_ptr, block, rows, features, length, head_dim, stride_dkl)
    if KIND == FAVOR:
        _store_tile(grad_k_ptr, grad_k, rows, dims, length, head_dim, stride_dkl)
    _store_tile(grad_v_ptr, grad_v, rows, dims, length, head_dim, stride_dvl)
