"""Incremental decoding (`init_state` / `step`) against a full forward pass, and beam reordering.

Sources are padded (one row to a single token), models are in eval mode, and the
causal-linear chunk is small so the full pass crosses chunks while the steps use the
recurrence. Every residual scheme is covered, since `step` splits each wrapper into
`pre`/`post`, and every position kind: rotary positions turn each step's query and key by
the absolute position the state holds, which a step at the wrong offset would miss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.model import DecoderState
from seq2seq.model.embedding import POSITIONS
from seq2seq.model.norms import NORMS
from support.attention_cases import CAUSAL, CROSS
from support.tiny_models import linear_settings

NORM_SCHEMES = [(name, position) for name in sorted(NORMS) for position in sorted(NORMS[name])]
POSITION_KINDS = sorted(POSITIONS)
T = 9


def decode(model: Any, state: DecoderState, tokens: Tensor) -> tuple[Tensor, DecoderState]:
    """Feed `tokens: (B, L)` one position at a time -> logits `(B, L, V)` and the state."""
    logits = []
    for t in range(tokens.shape[1]):
        step_logits, state = model.step(tokens[:, t], state)
        logits.append(step_logits)
    return torch.stack(logits, dim=1), state


@pytest.fixture
def seq2seq_model(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    open_rezero: Callable[..., None],
) -> Callable[..., Any]:
    def build(
        decoder: str,
        cross: str,
        norm: tuple[str, str] = ("layernorm", "pre"),
        position: str = "sinusoidal",
    ) -> nn.Module:
        cfg = make_config(
            encoder=cross,
            decoder=decoder,
            cross=cross,
            norm=norm[0],
            norm_position=norm[1],
            position=position,
            linear=linear_settings(decoder, cross, chunk_size=4),
        )
        model = make_model(cfg)
        open_rezero(model)
        return model.eval()

    return build


@pytest.fixture
def language_model(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> Callable[..., Any]:
    """`language_model(decoder, position, **fields)`: a tiny decoder_lm in eval mode."""

    def build(decoder: str, position: str, **fields: Any) -> nn.Module:
        cfg = make_config(kind="decoder_lm", decoder=decoder, position=position, **fields)
        return make_model(cfg).eval()

    return build


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("norm", NORM_SCHEMES, ids=lambda n: "-".join(n))
@pytest.mark.parametrize("cross", CROSS)
@pytest.mark.parametrize("decoder", CAUSAL)
def test_steps_match_full_forward(
    seq2seq_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    cross: str,
    norm: tuple[str, str],
    position: str,
) -> None:
    model = seq2seq_model(decoder, cross, norm, position)
    batch = make_batch([7, 3, 1], [T, T, T])
    with torch.no_grad():
        full = model(batch.src, batch.src_mask, batch.tgt, batch.tgt_mask)
        memory = model.encode(batch.src, batch.src_mask)
        stepped, state = decode(model, model.init_state(memory, batch.src_mask), batch.tgt)
    assert state.position == T
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("cross", CROSS)
@pytest.mark.parametrize("decoder", CAUSAL)
def test_reordered_state_matches_decoding_the_reordered_batch(
    seq2seq_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    cross: str,
    position: str,
) -> None:
    """Beam search's `index_select` of every cached tensor: a permutation with a duplicate."""
    model = seq2seq_model(decoder, cross, position=position)
    batch = make_batch([7, 3, 5], [T, T, T])
    index = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        memory = model.encode(batch.src, batch.src_mask)
        _, state = decode(model, model.init_state(memory, batch.src_mask), batch.tgt[:, :4])
        continued, _ = decode(model, state.reorder(index), batch.tgt[index, 4:])

        src, src_mask = batch.src[index], batch.src_mask[index]
        memory = model.encode(src, src_mask)
        expected, _ = decode(model, model.init_state(memory, src_mask), batch.tgt[index])
        full = model(src, src_mask, batch.tgt[index], batch.tgt_mask[index])
    torch.testing.assert_close(continued, expected[:, 4:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(continued, full[:, 4:], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("decoder", CAUSAL)
def test_language_model_steps_match_full_forward(
    language_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    position: str,
) -> None:
    model = language_model(decoder, position, linear=linear_settings(decoder, chunk_size=4))
    tokens = make_batch([1], [T, T]).tgt
    with torch.no_grad():
        full = model(tokens, None)
        stepped, state = decode(model, model.init_state(), tokens)
        reordered, _ = decode(model, state.reorder(torch.tensor([1, 1])), tokens[[1, 1], :2])
        extended = model(torch.cat([tokens[[1, 1]], tokens[[1, 1], :2]], dim=1), None)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(reordered, extended[:, T:], atol=1e-5, rtol=1e-4)


LONG = 200  # the softmax KV cache starts with room for 64 and doubles: grows at 64 and 128


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("decoder", CAUSAL)
def test_long_decoding_matches_full_forward_across_cache_growth(
    language_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    position: str,
) -> None:
    """200 steps, every step's logits against the full pass: past the softmax KV cache's
    growths (a cache that lost its old keys when it grew would pass any shorter test)
    and past several causal-linear chunks of the default size 64."""
    model = language_model(decoder, position, max_len=256)
    tokens = make_batch([1], [LONG, LONG], seed=5).tgt
    with torch.no_grad():
        full = model(tokens, None)
        stepped, state = decode(model, model.init_state(), tokens)
    assert state.position == LONG
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize("decoder", CAUSAL)
def test_reordered_state_carries_across_cache_growth(
    language_model: Callable[..., Any],
    make_batch: Callable[..., Any],
    decoder: str,
    position: str,
) -> None:
    """Beam reordering (a duplicate row, a dropped row) before the cache's first growth,
    then decoding on past its second: the logits are those of the full pass over each
    reordered row's whole sequence."""
    model = language_model(decoder, position, max_len=256)
    tokens = make_batch([1], [140, 140, 140], seed=6).tgt
    index = torch.tensor([2, 0, 2])
    with torch.no_grad():
        _, state = decode(model, model.init_state(), tokens[:, :60])
        continued, _ = decode(model, state.reorder(index), tokens[index, 60:])
        full = model(tokens[index], None)
    torch.testing.assert_close(continued, full[:, 60:], atol=1e-5, rtol=1e-4)
