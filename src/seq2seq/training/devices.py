"""The `device` settings of the CLIs: `auto`, `cpu`, `cuda` or `cuda:N`, checked against
what this machine has before any data is loaded."""

from __future__ import annotations

import os

import torch

from seq2seq.config.checks import check_device_name


def resolve_device(name: str, *, field: str, local_rank: int = 0) -> torch.device:
    """The device `name` means here: `auto` is CUDA device `local_rank` when CUDA is
    available, else the CPU. A CUDA device this machine lacks is an error."""
    check_device_name(name, field=field)
    if name == "auto":
        return (
            torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{field}={name!r} but no CUDA device is available; use auto or cpu")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"{field}={name!r} but this machine has {count} CUDA device(s): "
            f"use cuda:0 to cuda:{count - 1}"
        )
    return device


SMALL_MODEL_PARAMETERS = 5_000_000
"""Below this many parameters a CPU training step gains little from a second thread."""


def cpu_threads(setting: str, *, parameters: int) -> tuple[int, str]:
    """The intra-op threads for `trainer.threads=setting`, and why, in words.

    `auto`: one thread for a small model (its matrices are too small to split well, and
    on a busy machine each extra thread waits for a core that another process holds, which
    made a 0.67M-parameter run 20x slower); otherwise the cores not busy by the 1-minute
    load average, at least one. A number is taken as given."""
    if setting != "auto":
        return int(setting), "trainer.threads"
    cores = os.cpu_count() or 1
    if parameters < SMALL_MODEL_PARAMETERS:
        return 1, f"auto: a model under {SMALL_MODEL_PARAMETERS // 1_000_000}M parameters"
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    idle = max(1, cores - busy)
    return idle, f"auto: {idle} of {cores} cores idle (load average {busy})"
