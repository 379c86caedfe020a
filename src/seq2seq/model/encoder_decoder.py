"""`EncoderDecoderTransformer`: an encoder stack and a decoder stack with cross-attention."""

from __future__ import annotations

from torch import Tensor

from seq2seq.model.base_model import PerformerModel
from seq2seq.model.stack import DecoderState, PerformerDecoder, PerformerEncoder


class EncoderDecoderTransformer(PerformerModel):
    def __init__(
        self, encoder: PerformerEncoder, decoder: PerformerDecoder, *, redraw_interval: int = 0
    ) -> None:
        super().__init__(redraw_interval=redraw_interval)
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
