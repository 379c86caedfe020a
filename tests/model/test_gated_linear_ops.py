"""Gated linear attention (`gated_linear_ops.py`) against the recurrence written plainly.

The reference is the sequential definition, `S_t = exp(g_t) S_{t-1} + k_t v_t^T`,
`o_t = S_t^T q_t`, one Python step per position in float64. The chunked form must match
it (values and gradients) for chunk sizes that do and do not divide the length, so the
within-chunk gates, the decay between chunks and the padding are all exercised; decoding
step by step must match the chunked form at every position. Sizes are tiny.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.attention.gated_linear_ops import (
    gated_linear_attention,
    gated_linear_final_state,
    gated_linear_step,
)

Inputs = tuple[Tensor, Tensor, Tensor, Tensor]


def reference(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor) -> tuple[Tensor, Tensor]:
    """The recurrence, one position at a time in float64: outputs `(B, H, L, Dv)` and the
    final state `(B, H, Dk, Dv)`, from `q, k: (B, H, L, Dk)`, `v: (B, H, L, Dv)`,
    `log_decay: (B, H, L)`."""
    q, k, v, log_decay = q.double(), k.double(), v.double(), log_decay.double()
    batch, heads, length, dk = q.shape
    state = q.new_zeros(batch, heads, dk, v.shape[-1])
    outputs = []
    for t in range(length):
        gate = log_decay[:, :, t].exp()[..., None, None]
        state = gate * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append(torch.einsum("bhd,bhde->bhe", q[:, :, t], state))
    return torch.stack(outputs, dim=2), state


def make_inputs(
    length: int,
    *,
    dk: int = 5,
    dv: int = 3,
    batch: int = 2,
    heads: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Inputs:
    """Random `q, k: (B, H, L, Dk)`, `v: (B, H, L, Dv)` and `log_decay: (B, H, L)`, mostly
    `-softplus(randn)` with some entries 0 (no decay) and some -20 (state wiped out)."""
    generator = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(batch, heads, length, dk, generator=generator) for _ in range(2))
    v = torch.randn(batch, heads, length, dv, generator=generator)
    log_decay = -F.softplus(torch.randn(batch, heads, length, generator=generator))
    log_decay[..., 2::5] = 0.0
    log_decay[0, :, 3::7] = -20.0
    return q.to(dtype), k.to(dtype), v.to(dtype), log_decay.to(dtype)


def values_and_grads(
    attend: Callable[..., Tensor], inputs: Inputs, upstream: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The output of `attend(q, k, v, log_decay)` and the gradients of `(out * upstream).sum()`
    with respect to all four inputs."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = attend(*leaves)
    return out.detach(), torch.autograd.grad((out * upstream).sum(), leaves)


@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 16, 64])
def test_chunked_matches_reference(chunk_size: int, length: int) -> None:
    inputs = make_inputs(length)
    upstream = torch.randn(2, 2, length, 3, generator=torch.Generator().manual_seed(1)).double()

    out, grads = values_and_grads(
        lambda *x: gated_linear_attention(*x, chunk_size=chunk_size), inputs, upstream
    )
    expected, expected_grads = values_and_grads(lambda *x: reference(*x)[0], inputs, upstream)

    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for name, grad, expected_grad in zip(
        ["q", "k", "v", "log_decay"], grads, expected_grads, strict=True
    ):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("length", [1, 7, 33])
@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_final_state_matches_reference(chunk_size: int, length: int) -> None:
    q, k, v, log_decay = make_inputs(length)

    state = gated_linear_final_state(k, v, log_decay, chunk_size=chunk_size)

    torch.testing.assert_close(state, reference(q, k, v, log_decay)[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("length", "chunk_size"), [(5, 2), (7, 3), (7, 1), (8, 4), (3, 8)])
def test_gradcheck(length: int, chunk_size: int) -> None:
    """The hand-written backward (recomputed scores, the scans over chunks, the log decays'
    closed form) against finite differences, with lengths that do and do not fill the last
    chunk."""
    q, k, v, _ = make_inputs(length, dk=3, dv=2, batch=1, heads=2)
    # Strictly negative, so gradcheck's perturbations keep the gates <= 0.
    generator = torch.Generator().manual_seed(2)
    log_decay = -F.softplus(torch.randn(1, 2, length, generator=generator))
    inputs = [x.detach().double().requires_grad_() for x in (q, k, v, log_decay)]

    assert torch.autograd.gradcheck(
        lambda *x: gated_linear_attention(*x, chunk_size=chunk_size), inputs, eps=1e-6, atol=1e-8
    )


def test_step_by_step_decoding_matches_chunked() -> None:
    q, k, v, log_decay = make_inputs(11, dk=4, dv=6)
    full = gated_linear_attention(q, k, v, log_decay, chunk_size=4)

    state = None
    for t in range(11):
        position = slice(t, t + 1)
        out, state = gated_linear_step(
            q[:, :, position],
            k[:, :, position],
            v[:, :, position],
            log_decay[:, :, t : t + 1],
            state,
        )
        torch.testing.assert_close(out, full[:, :, position], rtol=1e-10, atol=1e-10)
    assert state is not None
    torch.testing.assert_close(
        state, gated_linear_final_state(k, v, log_decay, chunk_size=4), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("t0", [0, 3, 4, 9, 12])
@pytest.mark.parametrize("which", ["q", "k", "v", "log_decay"])
def test_causal(which: str, t0: int) -> None:
    inputs = make_inputs(13, dtype=torch.float32)
    before = gated_linear_attention(*inputs, chunk_size=4)
    changed = list(inputs)
    index = ["q", "k", "v", "log_decay"].index(which)
    changed[index] = changed[index].clone()
    if which == "log_decay":
        changed[index][..., t0] = -3.0 - changed[index][..., t0]
    else:
        changed[index][..., t0, :] = 10.0 * torch.randn_like(changed[index][..., t0, :])

    after = gated_linear_attention(*changed, chunk_size=4)

    assert torch.equal(after[:, :, :t0], before[:, :, :t0])
    # The change reaches the output somewhere, or this test would pass vacuously.
    assert not torch.equal(after, before)


def test_autocast_bf16_computes_in_float32() -> None:
    q, k, v, log_decay = make_inputs(21, dtype=torch.float32)
    expected = gated_linear_attention(q, k, v, log_decay, chunk_size=8)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gated_linear_attention(q, k, v, log_decay, chunk_size=8)
        out_bf16 = gated_linear_attention(
            q.bfloat16(), k.bfloat16(), v.bfloat16(), log_decay, chunk_size=8
        )
        step_out, state = gated_linear_step(
            q[:, :, :1], k[:, :, :1], v[:, :, :1].bfloat16(), log_decay[:, :, :1], None
        )

    assert out.dtype == torch.float32 and out_bf16.dtype == torch.bfloat16
    assert step_out.dtype == torch.bfloat16 and state.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(out_bf16).all()
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)
    # bf16 inputs and output: each rounded to 8 significant bits.
    torch.testing.assert_close(
        out_bf16.float(), expected, rtol=5e-2, atol=5e-2 * expected.abs().max().item()
    )


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_strong_decay_is_finite(chunk_size: int) -> None:
    q, k, v, _ = make_inputs(200, dtype=torch.float32)
    log_decay = torch.full(q.shape[:3], -50.0)
    leaves = [x.requires_grad_() for x in (q, k, v, log_decay)]

    out = gated_linear_attention(*leaves, chunk_size=chunk_size)
    grads = torch.autograd.grad(out.square().sum(), leaves)

    assert torch.isfinite(out).all()
    assert all(torch.isfinite(grad).all() for grad in grads)
    # exp(-50) ~ 2e-22: each position sees only its own key.
    torch.testing.assert_close(out, (q * k).sum(-1, keepdim=True) * v, rtol=1e-5, atol=1e-5)


def test_chunk_size_invariance() -> None:
    inputs = make_inputs(70, dk=4, dv=6)

    outputs = [gated_linear_attention(*inputs, chunk_size=size) for size in (1, 8, 64)]

    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], rtol=1e-12, atol=1e-12)


def test_rejects_bad_arguments() -> None:
    q, k, v, log_decay = make_inputs(6)
    with pytest.raises(ValueError, match="chunk_size"):
        gated_linear_attention(q, k, v, log_decay, chunk_size=0)
    with pytest.raises(ValueError, match="log_decay"):
        gated_linear_attention(q, k, v, log_decay[..., :-1])
    with pytest.raises(ValueError, match="v must be"):
        gated_linear_attention(q, k, v[:, :, :-1], log_decay)
    with pytest.raises(ValueError, match="one position"):
        gated_linear_step(q, k, v, log_decay, None)
