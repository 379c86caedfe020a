"""No decoder output before position t depends on target token t, for every decoder choice.

Checked at the whole-model level (built from config), with padded targets and sources and a
chunk size small enough that the target spans several causal-linear chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from support.attention_cases import CROSS, kind_choices
from support.tiny_models import linear_settings

T = 11
PERTURBED = [0, 3, 4, 5, 10]
DECODERS = kind_choices(causal=True)
"""Every causal kind in the registry, with every feature map where it uses one."""


def perturb(tokens: torch.Tensor, t: int) -> torch.Tensor:
    """Replace token t of every row by a different real (non-pad) token."""
    changed = tokens.clone()
    changed[:, t] = changed[:, t] % 19 + 1
    assert (changed[:, t] != tokens[:, t]).all()
    return changed


@pytest.mark.parametrize("cross", CROSS)
@pytest.mark.parametrize(("decoder", "feature_map"), DECODERS)
def test_encoder_decoder_is_causal(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    feature_map: str | None,
    cross: str,
) -> None:
    cfg = make_config(
        encoder=cross,
        decoder=decoder,
        cross=cross,
        linear=linear_settings(decoder, cross, feature_map=feature_map or "favor", chunk_size=4),
    )
    model = make_model(cfg).eval()
    batch = make_batch([9, 5, 7], [T, T, 8])
    with torch.no_grad():
        logits = model(batch.src, batch.src_mask, batch.tgt, batch.tgt_mask)
        for t in PERTURBED:
            changed = model(batch.src, batch.src_mask, perturb(batch.tgt, t), batch.tgt_mask)
            torch.testing.assert_close(changed[:, :t], logits[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(changed[0, t:], logits[0, t:]), "perturbation had no effect"


@pytest.mark.parametrize(("decoder", "feature_map"), DECODERS)
def test_decoder_language_model_is_causal(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    feature_map: str | None,
) -> None:
    cfg = make_config(
        kind="decoder_lm",
        decoder=decoder,
        linear=linear_settings(decoder, feature_map=feature_map, chunk_size=4),
    )
    model = make_model(cfg).eval()
    batch = make_batch([1], [T, 6])
    for mask in (None, batch.tgt_mask):
        with torch.no_grad():
            logits = model(batch.tgt, mask)
            for t in PERTURBED:
                changed = model(perturb(batch.tgt, t), mask)
                torch.testing.assert_close(changed[:, :t], logits[:, :t], atol=1e-6, rtol=0)
                assert not torch.allclose(changed[0, t:], logits[0, t:])
