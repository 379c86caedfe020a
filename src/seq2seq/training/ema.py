"""An exponential moving average (EMA) of a model's weights, as fairseq's `models/ema` and
timm's ModelEmaV2 keep one: after each optimizer step taken, `ema = decay * ema + (1 - decay)
* weights`, in float32 on the weights' device.

Only parameters are averaged. Buffers (FAVOR+ projections, which training redraws) belong to
the weights of the moment: the averaged weights are used, and saved, with the model's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from seq2seq.training.checkpoint import unwrap


class ExponentialMovingAverage:
    """The moving average of a model's parameters.

    Every method takes the model (DDP- or torch.compile-wrapped, or not) and reads the
    module inside; parameters are named as in its unwrapped state dict."""

    def __init__(self, model: nn.Module, *, decay: float, start: int) -> None:
        """Starts as a float32 copy of `model`'s parameters. `start`: the updates of steps
        1 to `start` copy the weights instead of averaging them (fairseq's
        `ema_start_update`), so early, fast-moving weights do not linger in the average."""
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} must be in (0, 1)")
        self.decay = decay
        self.start = start
        self.weights: dict[str, Tensor] = {
            name: parameter.detach().float().clone()
            for name, parameter in unwrap(model).named_parameters()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in `model`'s weights after optimizer step `step` (counted from 1)."""
        for name, parameter in unwrap(model).named_parameters():
            average = self.weights[name]
            if step <= self.start:
                average.copy_(parameter)
            else:
                average.mul_(self.decay).add_(parameter.detach().float(), alpha=1.0 - self.decay)

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """`model`'s state dict with the averaged parameters in place of its own (its
        buffers are the model's): loadable into the model like the checkpoint's `model`.
        Tied parameters share one tensor under each of their names."""
        module = unwrap(model)
        averaged = {
            id(parameter): self.weights[name] for name, parameter in module.named_parameters()
        }
        return {
            key: averaged.get(id(value), value).detach()
            for key, value in module.state_dict(keep_vars=True).items()
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the average from a `state_dict` (on any device) of the same model."""
        missing = sorted(self.weights.keys() - state.keys())
        if missing:
            raise ValueError(f"the saved EMA lacks the weights {missing}")
        for name, average in self.weights.items():
            average.copy_(state[name])

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """`model` holds the averaged weights inside the block, and exactly its own again
        after it (training goes on from them, bit for bit)."""
        parameters = dict(unwrap(model).named_parameters())
        own = {name: parameter.detach().clone() for name, parameter in parameters.items()}
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(self.weights[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in parameters.items():
                    parameter.copy_(own[name])
