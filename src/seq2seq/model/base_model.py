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

    def before_training_step(self, steps_taken: int) -> None:
        """Called by the trainer before each training step, with the optimizer steps taken
        so far: redraws the FAVOR+ projections every `redraw_interval` steps (0: never),
        from `(seed, layer, steps_taken // interval)`, so a resumed run draws as an unbroken
        one. Redrawn when the next step begins, not when step N ends: the weights that step
        N's validation, checkpoint and test figures see keep the projections they were
        trained with (new ones cost a trained model several tenths of a nat until training
        adapts to them)."""
        redraw_feature_maps(self, optimizer_step=steps_taken, interval=self.redraw_interval)

    def checkpoint_activations(self, enabled: bool = True) -> None:
        """Recompute every layer in the backward pass instead of keeping its activations
        (`trainer.activation_checkpointing`); training only, same losses and gradients."""
        for module in self.modules():
            if isinstance(module, LayerStack):
                module.checkpoint_layers = enabled
