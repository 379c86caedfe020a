"""A file the run cannot write while it trains (a full disk, a file-size limit, a quota, a
file system remounted read-only): the fault that ends the run like a signal does, with
the file, the step, what to free or set, and the checkpoint to continue from."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

WRITE_ERROR = "write_error"
"""Why `fit` stopped when a checkpoint could not be written (metrics.json's `stopped`)."""

_ADVICE = {
    errno.ENOSPC: "free {need} on that file system",
    errno.EDQUOT: "free {need} within your disk quota, or have it raised",
    errno.EFBIG: "raise the file-size limit (ulimit -f){above}",
    errno.EROFS: "make the run dir's file system writable again",
}


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def state_bytes(state: Any) -> int:
    """The bytes of the tensors in a (nested) checkpoint state: about its size on disk."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, Mapping):
        return sum(state_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(value) for value in state)
    return 0


class WriteFault(RuntimeError):
    """A file of the run (a checkpoint, metrics.json) that could not be written at `step`.
        The checkpoints written before are intact (each is written to a temporary file and
        renamed), and `resume_from` is the newest. `size`: about what a checkpoint needs (0:
    not a checkpoint)."""

    def __init__(
        self,
        path: Path,
        *,
        step: int,
        error: OSError | None,
        size: int,
        resume_from: Path | None,
        keep_last: int,
    ) -> None:
        self.step, self.resume_from = step, resume_from
        if error is not None and error.filename:  # best.pt after its step's file, say
            path = Path(error.filename)
        self.path = path
        if error is None:  # another rank's view: rank 0 wrote and failed
            reason, advice = "rank 0 could not write it", "see rank 0's error"
        else:
            reason = error.strerror or str(error)
            advice = _ADVICE.get(error.errno or 0, "make the run dir writable again").format(
                need=f"{megabytes(size)} or more" if size else "space",
                above=f" above {megabytes(size)}" if size else "",
            )
            if size and error.errno in (errno.ENOSPC, errno.EDQUOT):
                advice += (
                    f" (one checkpoint; trainer.keep_last={keep_last} keeps {keep_last}, "
                    "and best.pt)"
                )
        if resume_from is None:
            then = "then run it again (no checkpoint of this run was written)"
        else:
            then = (
                f"then continue from {resume_from} with trainer.resume=auto and the same "
                "hydra.run.dir"
            )
        super().__init__(f"cannot write {path} at step {step}: {reason}; {advice}, {then}")

    def record(self) -> dict[str, Any]:
        """What metrics.json says about it."""
        return {
            "step": self.step,
            "file": str(self.path),
            "error": str(self),
            "resume_from": None if self.resume_from is None else str(self.resume_from),
        }
