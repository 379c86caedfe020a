"""Checkpoint files: atomic writes, safe loads, keeping the last k and the best.

A checkpoint is a dict of tensors, numbers, strings and lists (the resolved config as YAML
text, RNG states as tensors), so `torch.load(weights_only=True)` reads it: loading never
runs arbitrary pickled code. A `trainer.strategy=fsdp` run writes `step_<N>.dcp`
directories instead (`seq2seq.training.sharded_checkpoint`), which `load_checkpoint` reads
as the same dict (DCP's own `.metadata` index is a pickle: read the ones you trust).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from seq2seq.atomic import write_atomic
from seq2seq.training.distributed import Distributed
from seq2seq.training.sharded_checkpoint import (
    DCP_SUFFIX,
    METADATA_NAME,
    OPTIMIZER_GROUPS_KEY,
    SHARDED_KEY,
    STATE_NAME,
    copy_sharded,
    is_sharded_checkpoint,
    read_sharded_tensors,
    remove_checkpoint,
    write_sharded,
)

log = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.(pt|dcp)$")
BEST_NAME = "best.pt"
SHARDED_BEST_NAME = "best" + DCP_SUFFIX
"""best.pt of a `trainer.strategy=fsdp` run: a copy of the best step's `.dcp` directory."""
BEST_NAMES = (BEST_NAME, SHARDED_BEST_NAME)
AVERAGED_KEY = "averaged_from"
"""Marks an averaged checkpoint: the file names and steps it was averaged from."""
WRAPPER_PREFIXES = ("_orig_mod.", "module.")
EMA_KEY = "ema"
"""The EMA of the weights (`trainer.ema_decay`), a state dict like the `model` entry's."""
DATA_KEY = "data_position"
"""The entry of the batch stream's own state: every rank's place in a streamed split."""


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save` through `write_atomic`: a crash leaves the old checkpoint or the new one."""
    try:
        write_atomic(path, lambda handle: torch.save(obj, handle))
    except (OSError, RuntimeError) as error:
        # A failed write (a full disk) inside torch.save's zip writer surfaces as the
        # writer's RuntimeError on closing, with the OSError as its context.
        cause = error if isinstance(error, OSError) else error.__context__
        if not isinstance(cause, OSError):
            raise
        if cause.filename is None and cause.errno is not None:
            # A write into a handle names no file: name the checkpoint.
            cause = OSError(cause.errno, cause.strerror, str(path))
        raise cause from None


def _first_sentence(error: BaseException) -> str:
    """PyTorch's reader adds a paragraph of advice to its one-line cause."""
    lines = str(error).splitlines()
    return lines[0].split(". ")[0].rstrip(".") if lines else ""


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load with `weights_only=True`; a missing, truncated or corrupt file gets one clear error.
    `mmap`: map the tensors instead of reading them, for a look at the other entries.

    A `.dcp` directory gives the same dict, its tensors whole (the optimizer's `state` keyed
    by parameter name, its `param_groups` naming them); with `mmap` its `state.pt` alone,
    without `model` and `optimizer` (`sharded_checkpoint.SHARDED_KEY` names them)."""
    if is_sharded_checkpoint(path):
        return _load_sharded(path, mmap=mmap)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with path.open("rb") as handle:
        magic = handle.read(4)
    # torch.save writes a zip archive (or, before torch 1.6, a pickle, protocol >= 2).
    if magic and not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise ValueError(
            f"{path} is not a checkpoint (not a file written by torch.save); give a "
            ".pt file from a run's checkpoints/ or the run dir"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise ValueError(
                f"checkpoint {path} holds objects other than tensors and plain data; it is "
                "not loaded, since unpickling them could run arbitrary code"
            ) from error
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded"
        ) from error
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded "
            f"({type(error).__name__}: {_first_sentence(error)})"
        ) from error
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"{path} is not a seq2seq checkpoint (no 'model' and 'config' entries)")
    return checkpoint


def _load_sharded(path: Path, *, mmap: bool) -> dict[str, Any]:
    state_file = path / STATE_NAME
    if not state_file.is_file() or not (path / METADATA_NAME).is_file():
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded (no {STATE_NAME} "
            f"or {METADATA_NAME} in it)"
        )
    try:
        checkpoint = torch.load(state_file, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded "
            f"({type(error).__name__}: {_first_sentence(error)})"
        ) from error
    if not isinstance(checkpoint, dict) or "config" not in checkpoint:
        raise ValueError(f"{path} is not a seq2seq checkpoint (no 'config' entry)")
    if mmap:
        return checkpoint
    try:
        tensors = read_sharded_tensors(path)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded "
            f"({type(error).__name__}: {_first_sentence(error)})"
        ) from error
    groups = checkpoint.pop(OPTIMIZER_GROUPS_KEY, [])
    checkpoint.pop(SHARDED_KEY, None)  # whole, the dict is a .pt checkpoint's
    optimizer = {"state": tensors.get("optimizer", {}), "param_groups": groups}
    return {**checkpoint, "model": tensors["model"], "optimizer": optimizer}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP's and torch.compile's wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def unwrapped_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without torch.compile's or DDP's key prefixes."""
    return strip_prefixes(model.state_dict())


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        stripped[key] = value
    return stripped


def evaluates_with_ema(checkpoint: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's run validated and tested its EMA weights (it holds an EMA,
    and its saved config has `trainer.ema_eval`, the default, true)."""
    if EMA_KEY not in checkpoint:
        return False
    trainer = (yaml.safe_load(checkpoint["config"]) or {}).get("trainer") or {}
    return bool(trainer.get("ema_eval", True))


def weights_for_inference(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights that decode and score for a checkpoint, without wrapper prefixes: the
    EMA's where its run evaluated with them, otherwise the trained weights (`model`)."""
    key = EMA_KEY if evaluates_with_ema(checkpoint) else "model"
    return strip_prefixes(checkpoint[key])


def checkpoint_paths(directory: Path) -> list[Path]:
    """`step_*.pt` files and `step_*.dcp` directories in `directory`, oldest step first."""
    if not directory.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in directory.iterdir()
        if (match := CHECKPOINT_PATTERN.match(path.name))
    ]
    return [path for _, path in sorted(found)]


class CheckpointManager:
    """Writes `step_<N>.pt` files, keeps the newest `keep_last`, and `best.pt` apart;
    `sharded`: `step_<N>.dcp` directories and `best.dcp` instead."""

    def __init__(self, directory: Path, *, keep_last: int, sharded: bool = False) -> None:
        if keep_last < 1:
            raise ValueError(f"trainer.keep_last={keep_last} must be at least 1")
        self.directory = directory
        self.keep_last = keep_last
        self.sharded = sharded

    def path(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}{DCP_SUFFIX if self.sharded else '.pt'}"

    @property
    def best(self) -> Path:
        return self.directory / (SHARDED_BEST_NAME if self.sharded else BEST_NAME)

    def save(self, state: dict[str, Any], *, step: int, is_best: bool) -> Path:
        path = self.path(step)
        atomic_save(state, path)
        if is_best:
            atomic_save(state, self.best)
        self._prune()
        log.info("saved checkpoint %s%s", path, " (best)" if is_best else "")
        return path

    def save_sharded(
        self,
        tensors: dict[str, Any],
        state: dict[str, Any],
        *,
        step: int,
        is_best: bool,
        distributed: Distributed,
    ) -> Path:
        """Every rank calls it: DCP writes `tensors` (each rank its shards), rank 0 `state`,
        copies the directory to best.dcp and prunes. An OSError is raised on the ranks whose
        write failed."""
        path = self.path(step)
        write_sharded(path, tensors, state, distributed=distributed, save_state=atomic_save)
        if distributed.is_main:
            if is_best:
                copy_sharded(path, self.best)
            self._prune()
            log.info("saved checkpoint %s%s", path, " (best)" if is_best else "")
        return path

    def _prune(self) -> None:
        for old in checkpoint_paths(self.directory)[: -self.keep_last]:
            remove_checkpoint(old)

    def latest(self) -> Path | None:
        paths = checkpoint_paths(self.directory)
        return paths[-1] if paths else None

    def written_after(self, step: int) -> list[Path]:
        """The step checkpoints of steps after `step`, and `best.pt` if it is one of them:
        what a run continuing from `step` would prune, or be mistaken for."""
        later = [
            path
            for path in checkpoint_paths(self.directory)
            if int(CHECKPOINT_PATTERN.match(path.name).group(1)) > step  # type: ignore[union-attr]
        ]
        for best in self._bests():
            try:
                best_step = load_checkpoint(best, mmap=True).get("trainer", {}).get("step", -1)
            except ValueError:  # unreadable: its step cannot be told, so not an earlier one
                best_step = step + 1
            if best_step > step:
                later.append(best)
        return later

    def existing(self) -> list[Path]:
        """The step checkpoints and `best.pt` (or `best.dcp`) already in the directory."""
        return checkpoint_paths(self.directory) + self._bests()

    def _bests(self) -> list[Path]:
        bests = [self.directory / name for name in BEST_NAMES]
        return [best for best in bests if best.is_file() or is_sharded_checkpoint(best)]
