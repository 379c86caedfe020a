"""Checkpoints of a `trainer.strategy=fsdp` run: one directory per step, `step_<N>.dcp/`.

It holds the model's weights and the optimizer's moments as `torch.distributed.checkpoint`
(DCP) writes them, each rank its own shards (`__<rank>_0.distcp`) and rank 0 the index
(`.metadata`), which any number of processes reads back resharded; and `state.pt`, rank 0's
`torch.save` of everything else (config, schedule, scaler, RNG states, data position,
counters, the optimizer's settings), which `weights_only=True` loads. DCP writes the
tensors alone: it unpickles the non-tensor entries it holds with `weights_only=False`.

Every rank writes into a temporary directory (`.<name>.tmp-<pid of rank 0>`) that rank 0
renames when all of it is on disk: a crash leaves the old checkpoint or the new one, never a
part. Under several nodes, the run dir must be on a filesystem every node sees.

Whole checkpoints (`read_sharded_tensors`) are read on one process without a process group,
so seq2seq-generate, -evaluate, -average and -export read a `.dcp` directory as a `.pt` file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint import load as dcp_load
from torch.distributed.checkpoint import save as dcp_save
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

from seq2seq.training.distributed import Distributed

DCP_SUFFIX = ".dcp"
STATE_NAME = "state.pt"
METADATA_NAME = ".metadata"
SHARDED_KEY = "sharded"
"""In `state.pt`: the entries of the checkpoint that DCP holds (`model`, `optimizer`)."""
OPTIMIZER_GROUPS_KEY = "optimizer_groups"
"""In `state.pt`: the optimizer's `param_groups`, their parameters named by their keys in
the model's state dict (`torch.distributed.checkpoint.state_dict`'s form)."""


def is_sharded_checkpoint(path: Path) -> bool:
    """Whether `path` is a `.dcp` checkpoint directory."""
    return path.suffix == DCP_SUFFIX and path.is_dir()


def _first_os_error(error: CheckpointException) -> OSError | None:
    """A full disk on one rank reaches every rank as DCP's CheckpointException."""
    for failure, _ in error.failures.values():  # (exception, its traceback) per rank
        cause: BaseException | None = failure
        while cause is not None:
            if isinstance(cause, OSError):
                return cause
            cause = cause.__cause__ or cause.__context__
    return None


def write_sharded(
    path: Path,
    tensors: dict[str, Any],
    state: dict[str, Any],
    *,
    distributed: Distributed,
    save_state: Callable[[dict[str, Any], Path], None],
) -> None:
    """Write `tensors` (every rank its shards) and `state` (rank 0, by `save_state`, an
    atomic torch.save) into the checkpoint directory `path`, replacing one already there.
    Every rank calls it; an OSError is raised on the ranks whose write failed, after the
    same collectives as the others, so the caller can agree on the fault."""
    temporary = path.with_name(f".{path.name}.tmp-{distributed.broadcast(os.getpid())}")
    error: OSError | None = None
    if distributed.is_main:
        try:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        except OSError as failed:
            error = failed
    if not distributed.any(error is not None):
        try:
            dcp_save(
                tensors,
                storage_writer=FileSystemWriter(temporary),
                no_dist=not distributed.enabled,
            )
        except CheckpointException as failed:  # raised on every rank when one failed
            error = _first_os_error(failed)
            if error is None:
                raise
        except OSError as failed:
            error = failed
    if distributed.is_main and error is None:
        try:
            save_state(state, temporary / STATE_NAME)
            _replace_directory(temporary, path)
        except OSError as failed:
            error = failed
    failed_somewhere = distributed.any(error is not None)
    if failed_somewhere and distributed.is_main:
        shutil.rmtree(temporary, ignore_errors=True)
    if error is not None:
        raise error


def _replace_directory(source: Path, target: Path) -> None:
    """Rename `source` to `target`; a `target` already there (the same step saved again) is
    renamed aside first and removed after."""
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}.old.tmp-{os.getpid()}")
        target.replace(aside)
    source.replace(target)
    _fsync_directory(target.parent)
    if aside is not None:
        shutil.rmtree(aside)


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def copy_sharded(source: Path, target: Path) -> None:
    """A copy of the checkpoint directory `source` at `target` (best.dcp), through a
    temporary directory renamed into place."""
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.copytree(source, temporary)
    _replace_directory(temporary, target)


def remove_checkpoint(path: Path) -> None:
    """Remove a step checkpoint, a file or a `.dcp` directory."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def read_sharded_tensors(path: Path) -> dict[str, Any]:
    """The whole tensors of a `.dcp` checkpoint (`model`: a state dict, `optimizer`: its
    `state` keyed by parameter name), on this process alone, on the CPU."""
    tensors: dict[str, Any] = {}
    _load_state_dict(
        tensors,
        storage_reader=FileSystemReader(path),
        planner=_EmptyStateDictLoadPlanner(),
        no_dist=True,
    )
    return tensors


def load_sharded_tensors(path: Path, tensors: dict[str, Any], *, distributed: Distributed) -> None:
    """Fill `tensors` (this rank's shards, as `torch.distributed.checkpoint.state_dict`
    gives them, in any layout) from the checkpoint `path`, in place; every rank calls it."""
    dcp_load(tensors, storage_reader=FileSystemReader(path), no_dist=not distributed.enabled)
