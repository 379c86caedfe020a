"""Checkpoint averaging: the mean of the weights of a run's last few checkpoints.

The usual last step of fairseq-style training (its `average_checkpoints.py`): averaging the
weights saved at the end of training smooths out the noise of the last updates, and often
gains a fraction of a BLEU or WER point at no training cost. The result is a checkpoint for
generation and evaluation only; it has no optimizer state to resume from.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.training.checkpoint import strip_prefixes
from seq2seq.training.config_diff import check_same_model

AVERAGED_KEY = "averaged_from"
"""Marks an averaged checkpoint: the file names and steps it was averaged from."""


def average_weights(
    states: Sequence[Mapping[str, Tensor]], parameters: Collection[str]
) -> dict[str, Tensor]:
    """Every entry of `parameters` averaged over `states` (in float64, then cast back);
    every other entry (buffers such as FAVOR+ projections, which training redraws) taken
    from the last state. All states must hold the same names with the same shapes."""
    if not states:
        raise ValueError("nothing to average: no checkpoints given")
    last = states[-1]
    for index, state in enumerate(states[:-1]):
        missing, extra = sorted(last.keys() - state.keys()), sorted(state.keys() - last.keys())
        if missing or extra:
            raise ValueError(
                f"checkpoint {index} holds other weights than the last one (missing {missing}, "
                f"extra {extra}); only checkpoints of one model can be averaged"
            )
        for name, tensor in state.items():
            if tensor.shape != last[name].shape:
                raise ValueError(
                    f"weight {name!r} has shape {tuple(tensor.shape)} in checkpoint {index} "
                    f"but {tuple(last[name].shape)} in the last one; only checkpoints of one "
                    "model can be averaged"
                )
    averaged = {}
    for name, tensor in last.items():
        if name in parameters and tensor.is_floating_point():
            total = torch.stack([state[name].to(torch.float64) for state in states]).sum(0)
            averaged[name] = (total / len(states)).to(tensor.dtype)
        else:
            averaged[name] = tensor.clone()
    return averaged


def average_checkpoints(
    checkpoints: Sequence[dict[str, Any]], paths: Sequence[Path], parameters: Collection[str]
) -> dict[str, Any]:
    """One checkpoint whose weights are the mean of `checkpoints` (loaded from `paths`, in
    the order of their steps, newest last). The config and tokenizers are the newest one's;
    every checkpoint must come from the same model config."""
    newest = checkpoints[-1]
    for checkpoint, path in zip(checkpoints[:-1], paths[:-1], strict=True):
        check_same_model(checkpoint["config"], newest["config"], source=path)
    weights = average_weights(
        [strip_prefixes(checkpoint["model"]) for checkpoint in checkpoints], parameters
    )
    averaged = {key: value for key, value in newest.items() if key in ("config", "tokenizer")}
    averaged["model"] = weights
    averaged[AVERAGED_KEY] = {
        "files": [path.name for path in paths],
        "steps": [checkpoint_step(checkpoint) for checkpoint in checkpoints],
    }
    return averaged


def checkpoint_step(checkpoint: Mapping[str, Any]) -> int:
    """The optimizer step a training checkpoint was written at; -1 when it has none."""
    trainer = checkpoint.get("trainer")
    return int(trainer.get("step", -1)) if isinstance(trainer, Mapping) else -1
