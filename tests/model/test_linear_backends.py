"""The linear kinds' backends (`model.linear.backend`): Triton kernels against the PyTorch
backend and a quadratic float64 reference, values and gradients.

The reference is `support.attention_references`'s, phi written out from each module's
feature map. Without a GPU the kernels run in Triton's interpreter (`TRITON_INTERPRET=1`,
set here before triton loads) on CPU tensors; with one, the same tests run the compiled
kernels on CUDA. Sizes are tiny (Dh = 16; FAVOR+ with 80 features, which the kernels cut
into blocks of 64 or 32 with a ragged last one; the kernels' chunks are 32 or 64 rows, the
torch backend's 16), so the interpreter takes seconds. Inputs are strided views like the
multi-head wrapper's `(B, L, H, Dh) -> (B, H, L, Dh)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from seq2seq.model.attention import (
    FEATURE_MAPS,
    CausalLinearAttention,
    EluFeatureMap,
    FavorFeatureMap,
    FeatureMap,
    LinearAttention,
    ReluFeatureMap,
    backends,
)
from seq2seq.model.attention.base import Attention
from support.attention_inputs import padding_mask
from support.attention_references import reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")
needs_triton = pytest.mark.skipif(
    not backends.TRITON_INSTALLED, reason="needs triton (the dev or gpu extra)"
)

B, H, DH, NB_FEATURES, CHUNK = 4, 2, 16, 80, 16
KINDS = ("linear", "causal_linear")
Qkv = tuple[Tensor, Tensor, Tensor]


def feature_map(name: str) -> FeatureMap:
    if name == "favor":
        return FavorFeatureMap(DH, num_features=NB_FEATURES, seed=0, layer_id=1)
    return {"elu": EluFeatureMap, "relu": ReluFeatureMap}[name](DH)


def attention(kind: str, map_name: str, backend: str, *, chunk_size: int = CHUNK) -> Attention:
    features = feature_map(map_name)
    if kind == "linear":
        return LinearAttention(features, backend=backend).to(DEVICE)
    return CausalLinearAttention(features, chunk_size=chunk_size, backend=backend).to(DEVICE)


def heads_view(batch: int, length: int, *, seed: int, dtype: torch.dtype) -> Tensor:
    """A `(B, H, L, Dh)` leaf viewed out of `(B, L, H, Dh)` storage, as projections give."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, H, DH, generator=generator).to(DEVICE, dtype)
    return x.requires_grad_().transpose(1, 2)


def inputs(query_length: int, key_length: int, *, dtype: torch.dtype = torch.float32) -> Qkv:
    return (
        heads_view(B, query_length, seed=1, dtype=dtype),
        heads_view(B, key_length, seed=2, dtype=dtype),
        heads_view(B, key_length, seed=3, dtype=dtype),
    )


def padding_mask_on_device(length: int) -> Tensor:
    """`padding_mask`'s rows (all real; right, left and all padding) on DEVICE."""
    return padding_mask(B, length).to(DEVICE)


def leaves(qkv: Qkv) -> list[Tensor]:
    """The leaf tensors behind the views (their grads are what autograd fills)."""
    return [x._base if x._base is not None else x for x in qkv]


def outputs_and_grads(attend: Callable[..., Tensor], qkv: Qkv, mask: Tensor | None) -> list[Tensor]:
    """`attend(q, k, v, mask)` and the gradients in the leaves behind q, k and v of
    `sum(out * g)`, g a random cotangent (the same for every `attend`)."""
    out = attend(*qkv, mask)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out)
    grads = torch.autograd.grad(out, leaves(qkv), grad_out)
    return [out, *grads]


def exact_outputs_and_grads(
    kind: str, module: Attention, qkv: Qkv, mask: Tensor | None
) -> list[Tensor]:
    """The plain float64 quadratic reference of `kind` (phi written out from the module's
    feature map): output and autograd's gradients."""
    causal = kind == "causal_linear"
    return outputs_and_grads(
        lambda q, k, v, m: reference(kind, module, q, k, v, m, causal=causal), qkv, mask
    )


def assert_all_close(
    got: list[Tensor], expected: list[Tensor], *, atol: float, rtol: float
) -> None:
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, expected, strict=True):
        torch.testing.assert_close(
            a.double(), b.double(), atol=atol, rtol=rtol, msg=lambda m, name=name: f"{name}: {m}"
        )


@needs_triton
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "no-mask"])
@pytest.mark.parametrize("map_name", FEATURE_MAPS)
@pytest.mark.parametrize("kind", KINDS)
def test_triton_matches_torch_and_quadratic_reference(
    kind: str, map_name: str, padded: bool
) -> None:
    """37 tokens: a full chunk and a ragged one in the causal kernels, a ragged one in the
    non-causal ones."""
    qkv = inputs(37, 37)
    mask = padding_mask_on_device(37) if padded else None
    triton_module = attention(kind, map_name, "triton")
    got = outputs_and_grads(triton_module, qkv, mask)
    assert got[0].dtype == torch.float32 and got[0].shape == (B, H, 37, DH)
    expected = outputs_and_grads(attention(kind, map_name, "torch"), qkv, mask)
    assert_all_close(got, expected, atol=1e-5, rtol=1e-4)
    exact = exact_outputs_and_grads(kind, triton_module, qkv, mask)
    assert_all_close(got, exact, atol=2e-5, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize("map_name", FEATURE_MAPS)
def test_triton_cross_attention_other_lengths(map_name: str) -> None:
    """Non-causal with 7 queries on 21 padded keys."""
    qkv = inputs(7, 21)
    mask = padding_mask_on_device(21)
    got = outputs_and_grads(attention("linear", map_name, "triton"), qkv, mask)
    expected = outputs_and_grads(attention("linear", map_name, "torch"), qkv, mask)
    assert_all_close(got, expected, atol=1e-5, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize("length", [5, 32, 70], ids=["short", "one-chunk", "three-chunks"])
def test_triton_causal_lengths(length: int) -> None:
    """Shorter than the kernels' chunk of 32 rows, exactly one, and three with a ragged one."""
    qkv = inputs(length, length)
    mask = padding_mask_on_device(length)
    got = outputs_and_grads(attention("causal_linear", "favor", "triton"), qkv, mask)
    expected = outputs_and_grads(attention("causal_linear", "favor", "torch"), qkv, mask)
    assert_all_close(got, expected, atol=1e-5, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("linear", torch.bfloat16),
        ("causal_linear", torch.bfloat16),
        ("causal_linear", torch.float16),
    ],
    ids=["linear-bf16", "causal_linear-bf16", "causal_linear-fp16"],
)
def test_triton_half_precision_inputs(kind: str, dtype: torch.dtype) -> None:
    """Half-precision q, k, v: float32 inside, outputs and gradients in the input dtype.

    Both backends round the output to that dtype and differentiate through the rounded
    output, so they agree to its rounding; the float32 answer on the same inputs is within
    1% of each tensor's largest entry (elementwise, cancellations in dq make it looser)."""
    qkv = inputs(37, 37, dtype=dtype)
    mask = padding_mask_on_device(37)
    got = outputs_and_grads(attention(kind, "favor", "triton"), qkv, mask)
    assert all(t.dtype == dtype for t in got)
    same_inputs = outputs_and_grads(attention(kind, "favor", "torch"), qkv, mask)
    q, k, v = (base.detach().float().requires_grad_().transpose(1, 2) for base in leaves(qkv))
    float32 = outputs_and_grads(attention(kind, "favor", "torch"), (q, k, v), mask)
    for a, b, c in zip(got, same_inputs, float32, strict=True):
        scale = c.abs().max().item()
        assert (a.double() - b.double()).abs().max().item() <= 1e-2 * scale
        assert (a.double() - c.double()).abs().max().item() <= 1e-2 * scale


@needs_triton
@pytest.mark.parametrize("kind", KINDS)
def test_triton_large_norm_keys_still_average_the_values(kind: str) -> None:
    """FAVOR+ features of keys with std 5 are tiny but still weights: constant values come
    back unchanged (see SMALLEST_DENOMINATOR)."""
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, H, 48, DH, generator=generator).to(DEVICE) * 5 for _ in range(2))
    v = torch.full((2, H, 48, DH), 3.0, device=DEVICE)
    with torch.no_grad():
        out = attention(kind, "favor", "triton")(q, k, v, None)
    torch.testing.assert_close(out, v, rtol=1e-4, atol=1e-4)


@needs_triton
@pytest.mark.parametrize(("kind", "map_name"), [("linear", "favor"), ("causal_linear", "elu")])
def test_triton_ops_compile_as_one_graph(kind: str, map_name: str) -> None:
    """The kernels sit behind custom ops: `torch.compile(fullgraph=True)` traces through."""
    torch._dynamo.reset()
    module = attention(kind, map_name, "triton")
    qkv = inputs(20, 20)
    mask = padding_mask_on_device(20)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    got = outputs_and_grads(compiled, qkv, mask)  # type: ignore[arg-type]
    assert_all_close(got, outputs_and_grads(module, qkv, mask), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("map_name", ["favor", "elu"])
def test_torch_backend_saves_no_features(kind: str, map_name: str) -> None:
    """The memory-lean autograd functions keep q, k, v, the output and the denominators
    (non-causal: also the m x (Dh + 1) state), never an (L, m) feature tensor."""
    length = 96
    qkv = tuple(torch.randn(1, H, length, DH, requires_grad=True) for _ in range(3))
    module = attention(kind, map_name, "torch").cpu()
    given = {t.untyped_storage().data_ptr() for t in qkv}
    saved: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        if tensor.untyped_storage().data_ptr() not in given:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = module(*qkv, None)
    m = module.feature_map.num_features  # type: ignore[union-attr]
    output_and_denominators = 4 * H * length * (DH + 1)
    state = 4 * H * m * (DH + 1) if kind == "linear" else 0
    assert sum(saved.values()) <= output_and_denominators + state
    out.sum().backward()


@pytest.mark.parametrize("map_name", FEATURE_MAPS)
def test_feature_map_vjp_matches_autograd(map_name: str) -> None:
    features = feature_map(map_name)
    x = torch.randn(2, H, 9, DH, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    for is_query in (True, False):
        phi = features(x, is_query=is_query, mask=None if is_query else mask)
        grad = torch.randn_like(phi)
        (expected,) = torch.autograd.grad(phi, x, grad)
        got = features.vjp(x, phi.detach(), grad.clone(), mask=None if is_query else mask)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not backends.runs_triton("auto", cpu)
    assert not backends.runs_triton("torch", cuda)
    with pytest.raises(ValueError, match=r"model\.linear\.backend='fast' is unknown"):
        LinearAttention(EluFeatureMap(DH), backend="fast")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"model\.linear\.backend='triton' runs on CUDA"):
        backends.runs_triton("triton", cpu)
    monkeypatch.setattr(backends, "TRITON_INSTALLED", False)
    assert not backends.runs_triton("auto", cuda)
    with pytest.raises(ValueError, match=r"model\.linear\.backend='triton' needs the triton"):
        CausalLinearAttention(EluFeatureMap(DH), backend="triton")


def test_auto_on_cpu_runs_the_torch_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` never reaches the kernels on CPU tensors, interpreter or not."""
    calls: list[str] = []
    from seq2seq.model.attention import torch_backend

    original: Callable[..., Tensor] = torch_backend.causal_linear_attention
    monkeypatch.setattr(
        torch_backend,
        "causal_linear_attention",
        lambda *args, **kwargs: calls.append("torch") or original(*args, **kwargs),
    )
    module = CausalLinearAttention(EluFeatureMap(DH), chunk_size=CHUNK)
    assert module.backend == "auto"
    module(*(torch.randn(1, H, 5, DH) for _ in range(3)), None)
    assert calls == ["torch"]


def test_config_backend_reaches_every_linear_attention(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> None:
    cfg = make_config(
        encoder="linear", decoder="causal_linear", cross="linear", linear={"backend": "torch"}
    )
    kernels = [
        m
        for m in make_model(cfg).modules()
        if isinstance(m, LinearAttention | CausalLinearAttention)
    ]
    assert len(kernels) == 6 and {k.backend for k in kernels} == {"torch"}
    assert {
        k.backend
        for k in make_model(make_config(decoder="causal_linear")).modules()
        if isinstance(k, CausalLinearAttention)
    } == {"auto"}
    with pytest.raises(ValueError, match=r"model\.linear\.backend='cuda' is unknown"):
        make_model(make_config(decoder="causal_linear", linear={"backend": "cuda"}))
