"""The gated kinds (`gated_linear`, `delta`) inside their block: the module against a plain
float64 recurrence of the whole layer path (gate transform, write strengths, key
normalisation, head norm), the short convolution's decoding cache, the output gate, padding,
and the settings that choose them."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.config.model import DecoderConfig, LinearAttentionConfig, ModelConfig, layer_schedule
from seq2seq.model import build_model
from seq2seq.model.attention import MultiHeadAttention
from seq2seq.model.attention.delta import DeltaAttention, l2_normalize
from seq2seq.model.attention.gated_linear import GatedLinearAttention
from seq2seq.model.attention.gates import ForgetGate
from seq2seq.model.attention.short_conv import ShortConvolution
from seq2seq.model.checks import check_model

B, H, L, DH = 2, 3, 9, 4
GATES = ("data", "fixed", "none")


def _log_decay_reference(gate: ForgetGate, raw: Tensor | None, heads: int) -> Tensor:
    """`(B, H, L)` float64 log decays, written from the definitions in gates.py."""
    if gate.kind == "data":
        assert raw is not None
        dt = F.softplus(raw.double() + gate.dt_bias.double()[:, None])
        return -dt * gate.a_log.double().exp()[:, None]
    if gate.kind == "fixed":
        gamma = 1 - 2.0 ** (-5.0 - torch.arange(heads, dtype=torch.float64))
        return gamma.log()[None, :, None].expand(B, heads, L)
    return torch.zeros(B, heads, L, dtype=torch.float64)


def _rms(x: Tensor, weight: Tensor) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.double()


def _reference(
    module: GatedLinearAttention | DeltaAttention, q: Tensor, k: Tensor, v: Tensor, extras: dict
) -> Tensor:
    """The kind's output, position by position, in float64."""
    q, k, v = q.double(), k.double(), v.double()
    log_decay = _log_decay_reference(module.gate, extras.get("gate"), H)
    delta = isinstance(module, DeltaAttention)
    if delta:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = extras["beta"].double().sigmoid()
    else:
        q = q * DH**-0.5
    state = torch.zeros(B, H, DH, DH, dtype=torch.float64)
    outs = []
    for t in range(L):
        a = log_decay[..., t].exp()[..., None, None]
        kt, vt = k[:, :, t], v[:, :, t]
        if delta:
            b = beta[..., t][..., None, None]
            eye = torch.eye(DH, dtype=torch.float64)
            erase = eye - b * kt[..., :, None] * kt[..., None, :]
            state = a * (erase @ state) + b * kt[..., :, None] * vt[..., None, :]
        else:
            state = a * state + kt[..., :, None] * vt[..., None, :]
        outs.append((q[:, :, t, None, :] @ state)[:, :, 0])
    return _rms(torch.stack(outs, dim=2), module.norm.weight)


def _kind(name: str, gate: str, chunk_size: int = 4) -> Any:
    cls = GatedLinearAttention if name == "gated_linear" else DeltaAttention
    module = cls(heads=H, head_dim=DH, gate=gate, chunk_size=chunk_size)  # type: ignore[arg-type]
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5)
    return module


def _inputs(module: Any, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, DH, generator=generator) for _ in range(3))
    extras = {name: torch.randn(B, H, L, generator=generator) for name in module.extra_inputs}
    return q, k, v, extras


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("name", ["gated_linear", "delta"])
def test_the_kind_matches_a_plain_float64_recurrence(name: str, gate: str) -> None:
    module = _kind(name, gate)
    q, k, v, extras = _inputs(module)
    leaves = [t.requires_grad_() for t in (q, k, v, *extras.values())]
    out = module(q, k, v, None, extras=extras)
    expected = _reference(module, q, k, v, extras)
    torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=2e-5)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((out.double() * weights).sum(), leaves)
    expected_grads = torch.autograd.grad((expected * weights).sum(), leaves)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad.double(), expected_grad.double(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["gated_linear", "delta"])
def test_steps_equal_the_whole_sequence_past_chunk_boundaries(name: str) -> None:
    module = _kind(name, "data", chunk_size=2)
    q, k, v, extras = _inputs(module, seed=1)
    full = module(q, k, v, None, extras=extras)
    state = None
    for t in range(L):
        out, state = module.step(
            q[:, :, t : t + 1],
            k[:, :, t : t + 1],
            v[:, :, t : t + 1],
            state,
            extras={key: value[..., t : t + 1] for key, value in extras.items()},
        )
        torch.testing.assert_close(out, full[:, :, t : t + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gated_linear", "delta"])
def test_padded_keys_change_nothing_before_or_after_them(name: str) -> None:
    """A left-padded row attends as the same row unpadded: padded positions write nothing
    and decay nothing."""
    module = _kind(name, "data")
    q, k, v, extras = _inputs(module, seed=2)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, :3] = False
    padded = module(q, k, v, mask, extras=extras)
    alone = module(
        q[1:, :, 3:],
        k[1:, :, 3:],
        v[1:, :, 3:],
        None,
        extras={key: value[1:, :, 3:] for key, value in extras.items()},
    )
    torch.testing.assert_close(padded[1:, :, 3:], alone, atol=1e-5, rtol=1e-5)


def test_the_short_convolution_steps_as_it_convolves() -> None:
    conv = ShortConvolution(6, 4)
    x = torch.randn(2, 7, 6)
    full = conv(x)
    cache = None
    for t in range(7):
        out, cache = conv.step(x[:, t : t + 1], cache)
        torch.testing.assert_close(out, full[:, t : t + 1])
    # causal: a later input never changes an earlier output
    changed = x.clone()
    changed[:, 5] += 1.0
    torch.testing.assert_close(conv(changed)[:, :5], full[:, :5])
    # each position mixes in its kernel - 1 predecessors
    expected = F.silu(
        sum(conv.conv.weight[:, 0, j] * x[:, 6 - 3 + j] for j in range(4)) + conv.conv.bias
    )
    torch.testing.assert_close(full[:, 6], expected)


@pytest.mark.parametrize("length", [1, 2, 3, 9])
def test_the_short_convolution_has_conv1d_gradients(length: int) -> None:
    """The hand-written backward against autograd of a plain `Conv1d` over the transposed
    layout, in float64, with a padding mask, lengths shorter and longer than the kernel;
    then against finite differences."""
    torch.manual_seed(0)
    conv = ShortConvolution(5, 4).double()
    x = torch.randn(2, length, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length // 2] = False
    cotangent = torch.randn(2, length, 5, dtype=torch.float64)
    params = [x, conv.conv.weight, conv.conv.bias]

    out = conv(x, mask)
    grads = torch.autograd.grad(out, params, cotangent)
    padded = F.pad((x * mask[..., None]).transpose(1, 2), (3, 0))
    expected = F.silu(F.conv1d(padded, conv.conv.weight, conv.conv.bias, groups=5)).transpose(1, 2)
    expected_grads = torch.autograd.grad(expected, params, cotangent)

    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for name, grad, expected_grad in zip(
        ["x", "weight", "bias"], grads, expected_grads, strict=True
    ):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.autograd.gradcheck(lambda x, w, b: conv(x, mask), params)


def test_the_short_convolution_under_autocast_convolves_in_bf16() -> None:
    """As `Conv1d` does under autocast: a bfloat16 result, close to the float32 one."""
    conv = ShortConvolution(6, 4)
    x = torch.randn(2, 7, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), conv(x), rtol=2e-2, atol=2e-2)


def test_the_output_gate_multiplies_the_heads_by_silu_of_the_input() -> None:
    torch.manual_seed(0)
    attention = _kind("gated_linear", "fixed")
    block = MultiHeadAttention(H * DH, H, attention, output_gate=True)
    x = torch.randn(B, L, H * DH)
    heads = attention(
        *(block._heads(p(x)) for p in (block.q_proj, block.k_proj, block.v_proj)), None
    )
    merged = heads.transpose(1, 2).reshape(B, L, H * DH)
    assert block.gate_proj is not None
    expected = block.out_proj(merged * F.silu(block.gate_proj(x)))
    torch.testing.assert_close(block(x), expected)


def _config(schedule: str, **linear: Any) -> ModelConfig:
    return ModelConfig(
        d_model=H * DH * 2,
        heads=H,
        d_ff=16,
        dropout=0.0,
        max_len=64,
        decoder=DecoderConfig(layers=4, self_attention=schedule),
        linear=LinearAttentionConfig(**linear),
    )


def test_a_schedule_builds_one_kind_per_layer() -> None:
    cfg = _config("delta*3+softmax", chunk_size=4)
    check_model(cfg, kind="decoder_lm")
    model = build_model(cfg, kind="decoder_lm", src_vocab_size=11, tgt_vocab_size=11, pad_id=0)
    kinds = [type(layer.self_attention.attention).__name__ for layer in model.decoder.layers]
    assert kinds == ["DeltaAttention"] * 3 + ["SoftmaxAttention"]
    blocks = [layer.self_attention for layer in model.decoder.layers]
    assert [b.conv is not None for b in blocks] == [True, True, True, False]
    assert [b.gate_proj is not None for b in blocks] == [True, True, True, False]
    assert layer_schedule("delta+softmax", 4, field="f") == ["delta", "softmax"] * 2


@pytest.mark.parametrize(
    ("schedule", "linear", "message"),
    [
        (
            "delta*3+softmax*2",
            {},
            r"names 5 layers, which does not divide model\.decoder\.layers=4",
        ),
        ("delta*x", {}, r"is not a schedule of attention kinds"),
        ("delta+", {}, r"is not a schedule of attention kinds"),
        ("delta+retnet", {}, r"'retnet' is not an attention kind; choose one of \["),
        ("linear*4", {}, r"'linear' is not causal"),
        (
            "softmax",
            {"gate": "fixed"},
            r"model\.linear\.gate='fixed' is read only by the gated kinds",
        ),
        (
            "causal_linear",
            {"conv_size": 4},
            r"model\.linear\.conv_size=4 is read only by the gated",
        ),
        ("delta", {"gate": "sigmoid"}, r"model\.linear\.gate='sigmoid' is not a gate"),
        ("delta", {"conv_size": 1}, r"model\.linear\.conv_size=1 is not a convolution"),
        ("delta", {"feature_map": "elu"}, r"model\.linear\.feature_map='elu' is set, but no stack"),
    ],
)
def test_bad_schedules_and_settings_fail_naming_the_field(
    schedule: str, linear: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_model(_config(schedule, **linear), kind="decoder_lm")


def test_l2_normalize_is_f_normalize_with_its_gradient() -> None:
    """The delta kind's normalisation: F.normalize's values bit for bit, autograd's
    gradient of it (also at a zero row, where the eps floor holds), and finite
    differences away from that floor."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=generator)
    x[0, 0, 0] = 0.0
    x[0, 0, 1] = 1e-14  # a norm under eps: the floor holds
    x.requires_grad_()
    upstream = torch.randn(x.shape, dtype=torch.float64, generator=generator)

    out = l2_normalize(x)
    expected = F.normalize(x, dim=-1)

    assert torch.equal(out, expected)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(l2_normalize, (x[1:].detach().requires_grad_(),))
