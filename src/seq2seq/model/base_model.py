"""`PerformerModel`: what the three model kinds share (FAVOR+ redraws, activation
checkpointing of their stacks)."""

from __future__ import annotations

from torch import nn

from seq2seq.model.attention.feature_maps import redraw_feature_maps
from seq2seq.model.stack import LayerStack


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
