"""`trainer.strategy=fsdp`: FSDP2 sharding of the model, and what the loop does differently
with sharded parameters (pausing gradient reduction, the gradient norm, checkpoint state,
the unsharded weights that validation decodes with).

Each `PerformerLayer` is one `fully_shard` unit, and the root (embeddings, output
projection, final norms) another: a rank holds 1/N of every parameter, its gradient and its
optimizer moments, and gathers one layer's weights at a time while it runs. Under
`trainer.precision=bf16` the gathered weights are bf16 and gradients are reduced in float32
(the sharded weights and the optimizer stay float32); autocast stays on around them, so the
float32 regions of the linear attentions run as under DDP.

Parameters are `DTensor`s; the helpers below work as well on a plain or DDP module, so the
loop has one code path, and so does a `fsdp` run resumed on one process (not sharded, its
checkpoints still `.dcp` directories).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from seq2seq.model.layer import PerformerLayer
from seq2seq.training.distributed import Distributed
from seq2seq.training.sharded_checkpoint import OPTIMIZER_GROUPS_KEY, load_sharded_tensors


def shard(model: nn.Module, *, param_dtype: torch.dtype | None) -> nn.Module:
    """`model`, sharded in place over the default process group: each layer, then the
    root. `param_dtype`: the dtype weights are gathered in (bf16), or None to keep float32."""
    policy = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=None if param_dtype is None else torch.float32
    )
    for module in model.modules():
        if isinstance(module, PerformerLayer):
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextmanager
def _fsdp_sync_paused(model: FSDPModule) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def gradient_sync_paused(model: nn.Module) -> AbstractContextManager[Any]:
    """The backward passes inside accumulate local gradients without reducing them: DDP's
    `no_sync`, FSDP2's `set_requires_gradient_sync(False)`."""
    if isinstance(model, FSDPModule):
        return _fsdp_sync_paused(model)
    return cast(AbstractContextManager[Any], model.no_sync())  # type: ignore[operator]


def whole(tensor: Tensor) -> Tensor:
    """A DTensor's full value (a sharded gradient norm is a partial sum per rank); a plain
    tensor as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local(tensor: Tensor) -> Tensor:
    """The part of a DTensor this rank holds; a plain tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def checkpoint_tensors(model: nn.Module, optimizer: Optimizer) -> tuple[dict[str, Any], list[Any]]:
    """What DCP writes of the model and optimizer (this rank's shards: `model`, and the
    optimizer's `state` keyed by parameter name), and the optimizer's `param_groups`,
    which go into `state.pt`."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    tensors = {"model": model_state, "optimizer": optimizer_state["state"]}
    return tensors, cast(list[Any], optimizer_state["param_groups"])


def load_checkpoint_tensors(
    path: Path,
    model: nn.Module,
    optimizer: Optimizer,
    checkpoint: dict[str, Any],
    *,
    distributed: Distributed,
) -> None:
    """Load the weights and optimizer state of the `.dcp` checkpoint `path` (whose
    `state.pt` is `checkpoint`) into `model` and `optimizer`, resharded to this run's
    processes; every rank calls it."""
    tensors, _ = checkpoint_tensors(model, optimizer)
    load_sharded_tensors(path, tensors, distributed=distributed)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=tensors["model"],
        optim_state_dict={
            "state": tensors["optimizer"],
            "param_groups": checkpoint[OPTIMIZER_GROUPS_KEY],
        },
    )


def full_model_state(model: nn.Module) -> dict[str, Tensor]:
    """The unsharded weights, on the CPU, on rank 0 (other ranks get an empty dict);
    every rank calls it."""
    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return cast(dict[str, Tensor], state)
