"""Non-finite steps: the error that ends a run on one, and the first module whose output, or
the first parameter whose gradient, is not finite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

MIN_LOSS_SCALE = 1e-4
"""Below this fp16 loss scale an overflow is no longer the scaler's to absorb."""
NONFINITE = "nonfinite"
"""Why `fit` stopped on a non-finite step (`trainer.nonfinite`, `trainer.max_skipped_steps`)."""


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient under `trainer.nonfinite=stop`, or one skip more than
    `trainer.max_skipped_steps`. `fit` ends the run on it like on any other stop."""

    def __init__(self, message: str, *, step: int, culprit: str) -> None:
        super().__init__(message)
        self.step = step
        """The step that was not taken."""
        self.culprit = culprit
        """Where it began: the first non-finite module output, or parameter gradient."""

    def record(self) -> dict[str, Any]:
        """What metrics.json says about it."""
        return {"step": self.step, "where": self.culprit, "error": str(self)}


def _tensors(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _tensors(item)]
    return []


def first_nonfinite_module(model: nn.Module, forward: Callable[[], Any]) -> str | None:
    """Rerun `forward` with hooks on every module; the first (in execution order) whose
    output holds inf or NaN is returned by name, or None when all outputs are finite."""
    found: list[str] = []
    names = {module: name or type(model).__name__ for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not found and any(
            t.is_floating_point() and not torch.isfinite(t).all() for t in _tensors(output)
        ):
            found.append(f"{names[module]} ({type(module).__name__})")

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def first_nonfinite_gradient(model: nn.Module) -> str | None:
    for name, parameter in model.named_parameters():
        grad = parameter.grad
        if isinstance(grad, DTensor):  # a sharded parameter's: this rank's part of it
            grad = grad.to_local()
        if grad is not None and not torch.isfinite(grad).all():
            return name
    return None
