"""Which implementation runs the linear kinds' forward pass: `model.linear.backend`.

- `torch`: the chunked parallel form in PyTorch (`torch_backend.py`), any device.
- `triton`: fused kernels (`triton_kernels.py`) that form the features on chip and
  recompute them in backward; CUDA tensors, or CPU tensors under Triton's interpreter
  (`TRITON_INTERPRET=1`, which the tests use).
- `auto`: `triton` for CUDA tensors where triton imports, `torch` everywhere else, silently.

Decoding steps (`step`) always run in PyTorch: one position needs no kernel; so do layers
under rotary positions (`auto` picks `torch` for them; `triton` is refused).
"""

from __future__ import annotations

import importlib.util
import os

import torch

LINEAR_BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
"""Found without importing it (importing costs a fraction of a second, and CPU runs never
need it); a constant, so `torch.compile` reads it without tracing a lookup."""


def triton_interpreting() -> bool:
    """Whether Triton runs its kernels in its CPU interpreter (set before triton loads)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_backend(backend: str) -> None:
    """Fail at construction for an unknown name, or `triton` without the package."""
    if backend not in LINEAR_BACKENDS:
        raise ValueError(
            f"model.linear.backend={backend!r} is unknown; choose one of {LINEAR_BACKENDS}"
        )
    if backend == "triton" and not TRITON_INSTALLED:
        raise ValueError(
            "model.linear.backend='triton' needs the triton package, which is not installed: "
            "install the gpu extra (pip install 'seq2seq[gpu]'), or choose 'auto' or 'torch'"
        )


def check_rotary_backend(backend: str) -> None:
    """The Triton kernels have no rotary form: `auto` runs rotary layers in PyTorch, an
    explicit `triton` is refused (`seq2seq.config.checks` says so first, naming both fields)."""
    if backend == "triton":
        raise ValueError(
            "model.linear.backend='triton' has no rotary form, but model.position='rotary'; "
            "choose 'auto' (rotary layers then run in PyTorch) or 'torch'"
        )


def runs_triton(backend: str, device: torch.device) -> bool:
    """Whether tensors on `device` go through the Triton kernels under `backend`."""
    if backend == "torch":
        return False
    if backend == "auto":
        return device.type == "cuda" and TRITON_INSTALLED
    if device.type == "cuda" or triton_interpreting():
        return True
    raise ValueError(
        f"model.linear.backend='triton' runs on CUDA tensors, but these are on {device.type} "
        "(Triton's interpreter, TRITON_INTERPRET=1, runs them on the CPU for tests only); "
        "choose 'auto' or 'torch'"
    )
