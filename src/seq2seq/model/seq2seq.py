"""Whole models from the same stacks: encoder-decoder, encoder classifier, decoder-only LM."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.model.stack import DecoderState, PerformerDecoder, PerformerEncoder


class EncoderDecoderTransformer(nn.Module):
    def __init__(self, encoder: PerformerEncoder, decoder: PerformerDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(
        self, src_tokens: Tensor, src_mask: Tensor, tgt_input: Tensor, tgt_mask: Tensor
    ) -> Tensor:
        """`src_tokens, src_mask: (B, S)`, `tgt_input, tgt_mask: (B, T)` -> logits `(B, T, V)`."""
        memory = self.encode(src_tokens, src_mask)
        return self.decoder(tgt_input, tgt_mask, memory, src_mask)

    def encode(self, src_tokens: Tensor, src_mask: Tensor) -> Tensor:
        """`(B, S)` tokens and mask -> encoder output `(B, S, D)`."""
        return self.encoder(src_tokens, src_mask)

    def init_state(self, memory: Tensor, memory_mask: Tensor) -> DecoderState:
        return self.decoder.init_state(memory, memory_mask)

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """`tokens: (B,)` -> next-token logits `(B, V)` and the new state."""
        return self.decoder.step(tokens, state)


POOLINGS = ("mean", "first")


class EncoderClassifier(nn.Module):
    """Encoder, pooled over real tokens (`mean`) or the first token (`first`), then a linear head."""

    def __init__(self, encoder: PerformerEncoder, *, num_classes: int, pooling: str) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling={pooling!r} is unknown; choose one of {POOLINGS}")
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Linear(encoder.embedding.embedding_dim, num_classes)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """`tokens, mask: (B, S)` -> class logits `(B, C)`."""
        hidden = self.encoder(tokens, mask)
        if self.pooling == "first":
            return self.head(hidden[:, 0])
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


class DecoderLanguageModel(nn.Module):
    """A decoder stack without cross-attention: next-token prediction."""

    def __init__(self, decoder: PerformerDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """`tokens, mask: (B, T)` -> logits `(B, T, V)`."""
        return self.decoder(tokens, mask)

    def init_state(self) -> DecoderState:
        return self.decoder.init_state()

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)
