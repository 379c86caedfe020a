"""Whole models from the same stacks: encoder-decoder, encoder classifier, decoder-only LM."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.model.attention.feature_maps import redraw_feature_maps
from seq2seq.model.stack import DecoderState, LayerStack, PerformerDecoder, PerformerEncoder


class PerformerModel(nn.Module):
    """What every model kind offers a training loop besides its forward pass."""

    def __init__(self, *, redraw_interval: int = 0) -> None:
        super().__init__()
        self.redraw_interval = redraw_interval

    def after_optimizer_step(self, step: int) -> None:
        """Called by the trainer after optimizer step `step` (counted from 1): redraws the
        FAVOR+ projections every `redraw_interval` steps (0: never), from `(seed, layer,
        step // interval)`, so a resumed run draws as an unbroken one."""
        redraw_feature_maps(self, optimizer_step=step, interval=self.redraw_interval)

    def checkpoint_activations(self, enabled: bool = True) -> None:
        """Recompute every layer in the backward pass instead of keeping its activations
        (`trainer.activation_checkpointing`); training only, same losses and gradients."""
        for module in self.modules():
            if isinstance(module, LayerStack):
                module.checkpoint_layers = enabled


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
