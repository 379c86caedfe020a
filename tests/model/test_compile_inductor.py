"""Whole models compile with inductor (the real compiler, not the eager backend) under bf16
autocast, as one graph, and train: loss and gradients match the uncompiled model.

Slow (tens of seconds of compilation per case), so outside the default run:
`pytest -m slow tests/model/test_compile_inductor.py`. On a machine with CUDA the same
cases run on the GPU, where inductor emits Triton kernels.
"""

from __future__ import annotations

import pytest
import torch

from seq2seq.model.attention import ATTENTIONS
from seq2seq.training.loss import label_smoothed_cross_entropy
from support.tiny_models import PAD, linear_settings, tiny_config, tiny_model

pytestmark = pytest.mark.slow

VOCAB = 23
# (encoder self, decoder self, cross): every attention kind appears at least once.
KINDS = {
    "softmax": ("softmax", "softmax", "softmax"),
    "causal_linear_decoder": ("softmax", "causal_linear", "softmax"),
    "performer": ("linear", "causal_linear", "linear"),
}
# A registered kind none of these uses gets a model of its own, softmax elsewhere.
KINDS.update(
    {
        name: (
            name if kind.supports_bidirectional else "softmax",
            name if kind.supports_causal else "softmax",
            name if kind.supports_bidirectional else "softmax",
        )
        for name, kind in ATTENTIONS.items()
        if not any(name in stacks for stacks in KINDS.values())
    }
)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]


def _model(kind: str) -> torch.nn.Module:
    encoder, decoder, cross = KINDS[kind]
    cfg = tiny_config(
        encoder=encoder,
        decoder=decoder,
        cross=cross,
        heads=2,
        max_len=64,
        # A chunk shorter than the target exercises the chunked (multi-chunk) causal path.
        linear=linear_settings(encoder, decoder, cross, nb_features=24, chunk_size=8),
    )
    return tiny_model(cfg, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)


def _loss_and_grads(
    model: torch.nn.Module, forward: torch.nn.Module, batch: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    src, src_mask, tgt_in, tgt_mask, tgt_out = batch
    model.zero_grad(set_to_none=True)
    device_type = src.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16):
        logits = forward(src, src_mask, tgt_in, tgt_mask)
    sums = label_smoothed_cross_entropy(logits.float(), tgt_out, pad_id=PAD, smoothing=0.1)
    loss = sums.loss / sums.tokens
    loss.backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return loss.detach(), grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_model_compiles_with_inductor_under_bf16(kind: str, device: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _model(kind).to(device).train()
    generator = torch.Generator().manual_seed(1)
    src = torch.randint(4, VOCAB, (3, 19), generator=generator)
    tgt = torch.randint(4, VOCAB, (3, 22), generator=generator)
    src_mask = torch.ones_like(src, dtype=torch.bool)
    tgt_mask = torch.ones(3, 21, dtype=torch.bool)
    src_mask[1, 11:] = False  # padding on both sides
    tgt_mask[2, 9:] = False
    batch = tuple(t.to(device) for t in (src, src_mask, tgt[:, :-1], tgt_mask, tgt[:, 1:]))

    eager_loss, eager_grads = _loss_and_grads(model, model, batch)
    compiled = torch.compile(model, fullgraph=True)
    compiled_loss, compiled_grads = _loss_and_grads(model, compiled, batch)

    assert torch.isfinite(compiled_loss)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=2e-2, atol=2e-2)
    assert len(compiled_grads) == len(eager_grads) > 0
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
        assert torch.isfinite(compiled_grad).all()
        # bf16 rounding differs between fused and unfused kernels: compare with a scale-aware
        # tolerance rather than elementwise.
        scale = eager_grad.abs().max().clamp(min=1e-3)
        assert (compiled_grad - eager_grad).abs().max() <= 5e-2 * scale
