"""The chunked (gated) delta rule and its decoding step against a plain recurrence.

The reference below is the recurrence written out in float64 with an explicit
`a_t (I - beta_t k_t k_t^T)` matrix per position, one Python step at a time, so it shares
nothing with the WY / UT transform, the in-chunk cumulative gates or the padding of the
chunked form. Lengths cross several chunks and are not multiples of the chunk size; Dk != Dv
so a transposed state or a swapped product cannot line up by accident. Keys are L2-normalised
as the callers do; log decays mix ordinary values with strong (-20) and zero ones.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.delta_rule_ops import (
    delta_rule_attention,
    delta_rule_step,
    segment_decays,
    state_scan,
)

Inputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]


def reference(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None) -> Tensor:
    """`S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T`, `o_t = S_t^T q_t`, in
    float64. q, k: (B, H, L, Dk); v: (B, H, L, Dv); beta, log_decay: (B, H, L) -> (B, H, L, Dv).
    """
    q, k, v, beta = q.double(), k.double(), v.double(), beta.double()
    batch, heads, length, dk = q.shape
    eye = torch.eye(dk, dtype=torch.float64)
    state = torch.zeros(batch, heads, dk, v.shape[-1], dtype=torch.float64)
    outs = []
    for t in range(length):
        kt, vt, bt = k[:, :, t, :, None], v[:, :, t, None, :], beta[:, :, t, None, None]
        transition = eye - bt * kt @ kt.transpose(-1, -2)  # (B, H, Dk, Dk)
        if log_decay is not None:
            transition = log_decay[:, :, t, None, None].double().exp() * transition
        state = transition @ state + bt * kt @ vt
        outs.append(state.transpose(-1, -2) @ q[:, :, t, :, None])  # (B, H, Dv, 1)
    return torch.cat(outs, dim=-1).transpose(-1, -2)


def make_inputs(
    length: int,
    *,
    gated: bool,
    batch: int = 2,
    heads: int = 2,
    dk: int = 5,
    dv: int = 3,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Inputs:
    """Normalised q and k: (B, H, L, Dk); v: (B, H, L, Dv); beta = sigmoid(randn): (B, H, L);
    log_decay = -softplus(randn): (B, H, L) with about one in seven entries -20 and one in
    seven 0, or None when not gated."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    q = F.normalize(randn(batch, heads, length, dk), dim=-1)
    k = F.normalize(randn(batch, heads, length, dk), dim=-1)
    v = randn(batch, heads, length, dv)
    beta = torch.sigmoid(randn(batch, heads, length))
    log_decay = None
    if gated:
        log_decay = -F.softplus(randn(batch, heads, length))
        kind = torch.randint(0, 7, (batch, heads, length), generator=generator)
        log_decay = log_decay.masked_fill(kind == 0, -20.0).masked_fill(kind == 1, 0.0)
        log_decay = log_decay.to(dtype)
    return q.to(dtype), k.to(dtype), v.to(dtype), beta.to(dtype), log_decay


def leaves(inputs: Inputs) -> list[Tensor]:
    """The inputs that take gradients, each made a fresh leaf."""
    return [x.detach().requires_grad_() for x in inputs if x is not None]


def with_grads(inputs: Inputs) -> tuple[Inputs, list[Tensor]]:
    tensors = leaves(inputs)
    q, k, v, beta, *rest = tensors
    return (q, k, v, beta, rest[0] if rest else None), tensors


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 16, 64])
def test_chunked_matches_reference(chunk_size: int, length: int, gated: bool) -> None:
    """Values and the gradients of q, k, v, beta and log_decay, in float64."""
    inputs, tensors = with_grads(make_inputs(length, gated=gated))
    out = delta_rule_attention(*inputs, chunk_size=chunk_size)
    cotangent = torch.randn(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad(out, tensors, cotangent)

    ref_inputs, ref_tensors = with_grads(inputs)
    expected = reference(*ref_inputs)
    ref_grads = torch.autograd.grad(expected, ref_tensors, cotangent)

    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    names = ["q", "k", "v", "beta", "log_decay"]
    for name, grad, ref_grad in zip(names, grads, ref_grads, strict=False):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9, msg=f"d{name}")


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize(("length", "chunk_size"), [(5, 2), (7, 3), (7, 1), (8, 4)])
def test_gradcheck(gated: bool, length: int, chunk_size: int) -> None:
    """The hand-written backward passes (the scan over chunks, the in-chunk decays) against
    finite differences, with lengths that do and do not fill the last chunk."""
    inputs = make_inputs(length, gated=gated, batch=1, heads=2, dk=3, dv=2)
    tensors = leaves(inputs)

    def chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *gate: Tensor) -> Tensor:
        return delta_rule_attention(q, k, v, beta, gate[0] if gate else None, chunk_size=chunk_size)

    assert torch.autograd.gradcheck(chunked, tensors)


@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_state_scan_matches_a_plain_loop(chunks: int) -> None:
    """`S_0 = 0`, `S_{i+1} = M_i S_i + R_i`: values from a loop written plainly, gradients
    against finite differences."""
    generator = torch.Generator().manual_seed(3)
    transition = torch.randn(2, 3, chunks, 4, 4, generator=generator, dtype=torch.float64)
    update = torch.randn(2, 3, chunks, 4, 2, generator=generator, dtype=torch.float64)

    states = state_scan(transition, update)

    expected = [torch.zeros(2, 3, 4, 2, dtype=torch.float64)]
    for i in range(chunks - 1):
        expected.append(transition[:, :, i] @ expected[-1] + update[:, :, i])
    torch.testing.assert_close(states, torch.stack(expected, dim=2), rtol=1e-12, atol=1e-12)
    leaves_ = [transition[:1, :1].clone().requires_grad_(), update[:1, :1].clone().requires_grad_()]
    assert torch.autograd.gradcheck(state_scan, leaves_)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_segment_decays_match_differences_of_cumulative_sums(chunk: int) -> None:
    """`exp(G_r - G_i)` on and below the diagonal, 0 above; gradients against finite
    differences."""
    generator = torch.Generator().manual_seed(4)
    log_decay = -F.softplus(torch.randn(2, 3, 2, chunk, generator=generator, dtype=torch.float64))
    cumulative = log_decay.cumsum(-1)
    below = torch.ones(chunk, chunk, dtype=torch.bool).tril()
    expected = (cumulative[..., :, None] - cumulative[..., None, :]).exp() * below

    torch.testing.assert_close(segment_decays(log_decay), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(segment_decays, [log_decay.requires_grad_()])


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_steps_match_chunked(gated: bool, dtype: torch.dtype) -> None:
    """Decoding from an empty state gives the chunked output at every position."""
    length = 11
    q, k, v, beta, log_decay = make_inputs(length, gated=gated, dtype=dtype)
    full = delta_rule_attention(q, k, v, beta, log_decay, chunk_size=4)
    state = None
    for t in range(length):
        step = slice(t, t + 1)
        out, state = delta_rule_step(
            q[:, :, step],
            k[:, :, step],
            v[:, :, step],
            beta[:, :, step],
            None if log_decay is None else log_decay[:, :, step],
            state,
        )
        assert out.dtype == dtype and state.shape == (2, 2, 5, 3)
        tolerance = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(out, full[:, :, step], rtol=tolerance, atol=tolerance)
    assert state is not None and state.dtype == dtype


def test_step_keeps_a_float32_state_for_half_inputs() -> None:
    q, k, v, beta, log_decay = make_inputs(1, gated=True, dtype=torch.bfloat16)
    out, state = delta_rule_step(q, k, v, beta, log_decay, None)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
@pytest.mark.parametrize("t0", [0, 3, 4, 9])
def test_causal(gated: bool, t0: int) -> None:
    """Changing every input from position t0 on leaves the outputs before t0 bit for bit."""
    length = 13
    inputs = make_inputs(length, gated=gated, dtype=torch.float32)
    changed = make_inputs(length, gated=gated, dtype=torch.float32, seed=1)
    mixed = tuple(
        None if a is None or b is None else torch.cat([a[:, :, :t0], b[:, :, t0:]], dim=2)
        for a, b in zip(inputs, changed, strict=True)
    )
    out = delta_rule_attention(*inputs, chunk_size=4)
    out_mixed = delta_rule_attention(*mixed, chunk_size=4)  # type: ignore[arg-type]
    assert torch.equal(out[:, :, :t0], out_mixed[:, :, :t0])
    assert not torch.equal(out[:, :, t0:], out_mixed[:, :, t0:])


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_bf16_autocast_runs_in_float32(gated: bool) -> None:
    inputs = make_inputs(37, gated=gated, dtype=torch.float32)
    expected = delta_rule_attention(*inputs, chunk_size=8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = delta_rule_attention(*inputs, chunk_size=8)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_bf16_inputs_return_bf16(gated: bool) -> None:
    inputs = make_inputs(37, gated=gated, dtype=torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = delta_rule_attention(*inputs, chunk_size=8)
    widened = [None if x is None else x.double() for x in inputs]
    expected = reference(*widened)  # type: ignore[arg-type]
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("gated", [False, True], ids=["ungated", "gated"])
def test_chunk_size_invariant(gated: bool) -> None:
    inputs = make_inputs(70, gated=gated, dk=4, dv=6)
    outs = [delta_rule_attention(*inputs, chunk_size=c) for c in (1, 8, 64)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-12, atol=1e-12)


def test_stable_under_strong_decay_and_full_writes() -> None:
    """L = 256 in float32 with beta near 1 (the transition nearly a projection) and
    log_decay -30 in places: finite, close to the float64 recurrence, finite gradients."""
    length = 256
    q, k, v, _, log_decay = make_inputs(length, gated=True, dtype=torch.float32)
    assert log_decay is not None
    generator = torch.Generator().manual_seed(2)
    beta = torch.sigmoid(6.0 + torch.randn(q.shape[:3], generator=generator))
    strong = torch.rand(q.shape[:3], generator=generator) < 0.1
    log_decay = log_decay.masked_fill(strong, -30.0)
    inputs, tensors = with_grads((q, k, v, beta, log_decay))
    out = delta_rule_attention(*inputs)
    grads = torch.autograd.grad(out.square().sum(), tensors)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(grad).all() for grad in grads)
    with torch.no_grad():
        expected = reference(*inputs)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)


def test_strong_decay_keeps_float32_precision_in_the_chunk() -> None:
    """Decay -1000 on the first half of each chunk, nearly none on the second: the in-chunk
    ratios of the second half are near 1 and must not come from subtracting two cumulative
    sums near -32000 (float32 would lose ~2e-3 of them)."""
    q, k, v, beta, _ = make_inputs(128, gated=True, dk=16, dv=16, dtype=torch.float32)
    log_decay = torch.full(q.shape[:3], -1e-3)
    log_decay[..., :32] = -1000.0
    log_decay[..., 64:96] = -1000.0
    out = delta_rule_attention(q, k, v, beta, log_decay, chunk_size=64)
    expected = reference(q, k, v, beta, log_decay)
    torch.testing.assert_close(out.double(), expected, rtol=2e-5, atol=2e-5)


def test_rejects_bad_arguments() -> None:
    q, k, v, beta, log_decay = make_inputs(4, gated=True)
    with pytest.raises(ValueError, match="chunk_size"):
        delta_rule_attention(q, k, v, beta, log_decay, chunk_size=0)
    with pytest.raises(ValueError, match="beta"):
        delta_rule_attention(q, k, v, beta[..., :3], log_decay)
    with pytest.raises(ValueError, match="one position"):
        delta_rule_step(q, k, v, beta, log_decay, None)
