"""The model, loss and optimizer can drive one small batch to near-zero loss."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config.model import DecoderConfig, EncoderConfig, ModelConfig
from seq2seq.model import build_model
from seq2seq.training.loss import label_smoothed_cross_entropy

PAD, BOS, EOS = 0, 2, 3


@pytest.mark.parametrize("decoder", ["softmax", "causal_linear"])
def test_overfit_one_batch(decoder: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=32,
        heads=4,
        d_ff=64,
        dropout=0.0,
        max_len=32,
        encoder=EncoderConfig(layers=2),
        decoder=DecoderConfig(layers=2, self_attention=decoder),
    )
    model = build_model(cfg, src_vocab_size=16, tgt_vocab_size=16, pad_id=PAD)
    source = torch.randint(4, 16, (8, 6))
    source_mask = torch.ones_like(source, dtype=torch.bool)
    source_mask[:3, 4:] = False
    source = source.masked_fill(~source_mask, PAD)
    target = source.flip(1)
    tgt_input = torch.cat([torch.full((8, 1), BOS), target], 1)
    tgt_output = torch.cat([target, torch.full((8, 1), EOS)], 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        logits = model(source, source_mask, tgt_input, torch.ones_like(tgt_input, dtype=torch.bool))
        sums = label_smoothed_cross_entropy(logits, tgt_output, pad_id=PAD, smoothing=0.0)
        loss = sums.loss / sums.tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss = loss.detach()
    assert loss.item() < 0.05


def test_label_smoothing_matches_torch() -> None:
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(1, 11, (2, 5))
    targets[0, 3:] = PAD
    sums = label_smoothed_cross_entropy(logits, targets, pad_id=PAD, smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 11),
        targets.reshape(-1),
        ignore_index=PAD,
        label_smoothing=0.1,
        reduction="sum",
    )
    torch.testing.assert_close(sums.loss, expected)
    assert sums.tokens == int((targets != PAD).sum())
