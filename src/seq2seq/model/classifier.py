"""`EncoderClassifier`: an encoder stack, pooled (mean, first token or max) into class logits."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.model.base_model import PerformerModel
from seq2seq.model.stack import PerformerEncoder

POOLINGS = ("mean", "cls", "max")


class EncoderClassifier(PerformerModel):
    """Encoder, pooled into one vector per sequence, then a linear head. Pooling: `mean`
    or `max` over the real tokens, or `cls`, the first token's output (the task puts a
    bos token first, as BERT puts [CLS])."""

    def __init__(
        self,
        encoder: PerformerEncoder,
        *,
        num_classes: int,
        pooling: str,
        redraw_interval: int = 0,
    ) -> None:
        super().__init__(redraw_interval=redraw_interval)
        assert pooling in POOLINGS, pooling
        self.encoder = encoder
        self.pooling = pooling
        self.head = nn.Linear(encoder.embedding.embedding_dim, num_classes)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """`tokens, mask: (B, S)` -> class logits `(B, C)`."""
        hidden = self.encoder(tokens, mask)
        if self.pooling == "cls":
            return self.head(hidden[:, 0])
        real = mask.unsqueeze(-1)
        if self.pooling == "max":
            pooled = hidden.masked_fill(~real, float("-inf")).amax(1)
            return self.head(pooled.masked_fill(~real.any(1), 0.0))
        weights = real.to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)
