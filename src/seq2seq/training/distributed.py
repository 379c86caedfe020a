"""Data-parallel context: rank, world size, and the few collectives the trainer needs.

Launched by `torchrun`, the environment holds RANK / WORLD_SIZE / LOCAL_RANK and the
process group is started here (gloo on CPU, nccl on GPU). Launched plainly, every
collective is a no-op, so single-process code pays nothing. A job of several tasks started
by submitit (`hydra/launcher=slurm` with `tasks_per_node` or `nodes` above 1) has only
submitit's and SLURM's variables: `adopt_submitit_environment` sets torchrun's from them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

RANK_VARIABLE = "RANK"
WORLD_SIZE_VARIABLE = "WORLD_SIZE"
SUBMITIT_VARIABLE = "SUBMITIT_EXECUTOR"
"""Set by submitit in every task of a job it runs (`slurm`, `local`)."""


def launched_rank() -> int:
    """This process's global rank as its launcher set it (0 when launched plainly)."""
    return int(os.environ.get(RANK_VARIABLE, "0"))


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64, so token counts stay exact)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one: stop and skip decisions agree."""
        return bool(self.sum([float(flag)])[0] > 0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj`, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def adopt_submitit_environment() -> None:
    """In a task of a submitit job of several tasks, set the variables torchrun would set
    (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR: the job's first node,
    MASTER_PORT: drawn from the job id, the same in every task), so that the tasks train as
    one data-parallel run. Variables already set win; a process that torchrun started, or
    that is not a submitit task, is left as it is."""
    if WORLD_SIZE_VARIABLE in os.environ or not os.environ.get(SUBMITIT_VARIABLE):
        return
    import submitit  # the `sweep` extra: present wherever submitit started this process

    job = submitit.JobEnvironment()
    if job.num_tasks <= 1:
        return
    torch_env = submitit.helpers.TorchDistributedEnvironment()
    for name, value in {
        "MASTER_ADDR": torch_env.master_addr,
        "MASTER_PORT": torch_env.master_port,
        RANK_VARIABLE: torch_env.rank,
        WORLD_SIZE_VARIABLE: torch_env.world_size,
        "LOCAL_RANK": torch_env.local_rank,
        "LOCAL_WORLD_SIZE": torch_env.local_world_size,
    }.items():
        os.environ.setdefault(name, str(value))


def init_distributed() -> Distributed:
    """Join the process group torchrun (or submitit) describes, or return the
    single-process context."""
    adopt_submitit_environment()
    world_size = int(os.environ.get(WORLD_SIZE_VARIABLE, "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
