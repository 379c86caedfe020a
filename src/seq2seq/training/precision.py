"""Mixed precision: the autocast dtype of each `trainer.precision`, and the context that
turns autocast on for it (or does nothing in fp32)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""`trainer.precision` -> the autocast dtype (None: no autocast)."""


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast to `dtype` on `device`'s type, or a no-op context for `dtype=None`."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
