"""Decoding through the model's incremental API equals decoding by full forward passes.

The reference is an adapter with the same `encode` / `init_state` / `step` protocol
whose `step` re-runs the whole decoder over the prefix so far and keeps the last
position's logits: no KV cache, no (S, z) recurrence. Greedy and beam search through
`seq2seq.generation.generate` must give the same tokens and scores either way, for every
registered causal decoder kind with every bidirectional cross-attention kind. Tiny random
models in eval mode; padded sources of different lengths; a small causal-linear chunk so
the full passes cross chunk borders while the steps use the recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation import Hypothesis, generate
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.tokenizer.sentencepiece import BOS_ID, EOS_ID, PAD_ID
from support.attention_cases import CAUSAL, CROSS
from support.tiny_models import VOCAB, linear_settings, tiny_config, tiny_model

# Tiny models on a loaded two-core machine: a second intra-op thread only waits.
pytestmark = pytest.mark.usefixtures("single_thread")

SOURCE_LENGTHS = [7, 3, 1, 5]
# Pushes the final hidden state towards the eos output row, so that random models end
# some outputs by choosing eos, not only by reaching the length limit.
EOS_BIAS = 1.0
# (decoder self-attention, cross-attention) for every registered pair; the encoder uses
# the cross-attention kind.
KINDS = [(decoder, cross) for decoder in CAUSAL for cross in CROSS]
SETTINGS = {
    "greedy": GenerationConfig(strategy="greedy", max_len_a=1.5, max_len_b=4),
    "beam": GenerationConfig(
        strategy="beam", beam_size=4, nbest=4, length_penalty=0.6, max_len_a=1.5, max_len_b=4
    ),
}


@dataclass
class PrefixState:
    """The reference's state: the fed tokens and the encoder output, nothing cached."""

    prefix: Tensor  # (N, t) long, bos first
    memory: Tensor  # (N, S, D)
    memory_mask: Tensor  # (N, S) bool

    def reorder(self, index: Tensor) -> PrefixState:
        return PrefixState(
            self.prefix.index_select(0, index),
            self.memory.index_select(0, index),
            self.memory_mask.index_select(0, index),
        )


class FullForwardDecoding:
    """The IncrementalModel protocol by a full decoder pass over the prefix at every step."""

    def __init__(self, model: EncoderDecoderTransformer) -> None:
        self.model = model

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        return self.model.encode(src_tokens, src_mask)

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> PrefixState:
        empty = torch.empty(memory.shape[0], 0, dtype=torch.long, device=memory.device)
        return PrefixState(empty, memory, memory_mask)

    def step(self, tokens: Tensor, state: PrefixState) -> tuple[Tensor, PrefixState]:
        """tokens: (N,) -> logits (N, V) of the position after the whole prefix."""
        prefix = torch.cat([state.prefix, tokens[:, None]], dim=1)
        # Every fed token is real to the incremental decoder too (it masks nothing).
        mask = torch.ones_like(prefix, dtype=torch.bool)
        logits = self.model.decoder(prefix, mask, state.memory, state.memory_mask)
        return logits[:, -1], PrefixState(prefix, state.memory, state.memory_mask)


def eos_leaning_model(decoder: str, cross: str) -> EncoderDecoderTransformer:
    cfg = tiny_config(
        encoder=cross,
        decoder=decoder,
        cross=cross,
        linear=linear_settings(decoder, cross, chunk_size=4),
        max_len=64,
        # Tied random embeddings make every step predict the token just fed, whatever
        # the prefix; untied, the outputs depend on the prefix.
        tie_output_embeddings=False,
    )
    torch.manual_seed(0)
    model = tiny_model(cfg, seed=0, pad_id=PAD_ID)
    assert isinstance(model, EncoderDecoderTransformer)
    eos_row = model.decoder.output.weight[EOS_ID]
    with torch.no_grad():
        model.decoder.final_norm.bias.copy_(EOS_BIAS * eos_row / eos_row.norm())
    return model.eval()


def padded_sources() -> tuple[Tensor, Tensor]:
    """(B, S) tokens drawn from the ordinary ids (above eos), PAD after each length."""
    generator = torch.Generator().manual_seed(1)
    width = max(SOURCE_LENGTHS)
    tokens = torch.randint(EOS_ID + 1, VOCAB, (len(SOURCE_LENGTHS), width), generator=generator)
    mask = torch.arange(width)[None, :] < torch.tensor(SOURCE_LENGTHS)[:, None]
    return tokens.masked_fill(~mask, PAD_ID), mask


def decode(model: object, settings: GenerationConfig) -> list[list[Hypothesis]]:
    src, src_mask = padded_sources()
    return generate(
        model,  # type: ignore[arg-type]
        src,
        src_mask,
        settings,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
    )


@pytest.mark.parametrize("strategy", sorted(SETTINGS))
@pytest.mark.parametrize(("decoder", "cross"), KINDS, ids=lambda kind: str(kind))
def test_incremental_decoding_equals_full_forward_decoding(
    decoder: str, cross: str, strategy: str
) -> None:
    model = eos_leaning_model(decoder, cross)
    settings = SETTINGS[strategy]
    incremental = decode(model, settings)
    full = decode(FullForwardDecoding(model), settings)

    assert [[h.tokens for h in nbest] for nbest in incremental] == [
        [h.tokens for h in nbest] for nbest in full
    ]
    for got, want in zip(incremental, full, strict=True):
        torch.testing.assert_close(
            torch.tensor([(h.score, h.log_prob) for h in got]),
            torch.tensor([(h.score, h.log_prob) for h in want]),
            atol=1e-4,
            rtol=1e-4,
        )
    # Not a vacuous comparison: outputs several tokens long, some ended by a chosen eos
    # before their limit, and beam search's n-best lists full.
    limits = settings.max_lengths(torch.tensor(SOURCE_LENGTHS)).tolist()
    lengths = [[len(h.tokens) for h in nbest] for nbest in incremental]
    assert max(max(row) for row in lengths) > 2
    assert any(n < limit for row, limit in zip(lengths, limits, strict=True) for n in row)
    expected = settings.nbest if strategy == "beam" else 1
    assert all(len(row) == expected for row in lengths)
