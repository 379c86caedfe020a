"""Precision: the autocast dtype of each `trainer.precision`, the context that turns
autocast on for it (or does nothing in fp32), and TF32 matmuls on CUDA."""

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


def use_tf32(device: torch.device, enabled: bool) -> None:
    """On CUDA, let float32 matmuls use TF32 tensor cores (`trainer.tf32`), or keep them
    IEEE; elsewhere nothing changes."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if enabled else "highest")
