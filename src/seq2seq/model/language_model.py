"""`DecoderLanguageModel`: a decoder stack without cross-attention, trained on next tokens."""

from __future__ import annotations

from torch import Tensor

from seq2seq.model.base_model import PerformerModel
from seq2seq.model.stack import DecoderState, PerformerDecoder


class DecoderLanguageModel(PerformerModel):
    """A decoder stack without cross-attention: next-token prediction."""

    def __init__(self, decoder: PerformerDecoder, *, redraw_interval: int = 0) -> None:
        super().__init__(redraw_interval=redraw_interval)
        self.decoder = decoder

    def forward(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """`tokens, mask: (B, T)` -> logits `(B, T, V)`."""
        return self.decoder(tokens, mask)

    def init_state(self) -> DecoderState:
        return self.decoder.init_state()

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        return self.decoder.step(tokens, state)
