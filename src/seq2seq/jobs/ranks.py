"""The ranks of one launch agree on their run: rank 0's run dir, and whether a job that its
scheduler or launcher started again continues its latest checkpoint.

Under torchrun (one node or many) every rank composes its own config, whose
`hydra.run.dir` may name another dir (`${now:...}` read a second later on another node,
hydra issue #2070): rank 0's run dir is the run's on every rank, and the dir Hydra made for
another rank is removed. A job that SLURM requeued or torchrun restarted continues from its
latest checkpoint (`seq2seq.training.restarts`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from seq2seq.training.checkpoint import checkpoint_paths
from seq2seq.training.distributed import SUBMITIT_VARIABLE, init_distributed, shutdown_distributed
from seq2seq.training.restarts import restart_count
from seq2seq.training.resume import RESUME_LATEST
from seq2seq.training.run_files import recorded_job_id, remove_stray_dir

log = logging.getLogger("seq2seq.train")


@contextmanager
def ranks_joined(cfg: DictConfig, hydra_dir: Path, *, job_id: str | None) -> Iterator[Path]:
    """The run dir of this run on every rank: rank 0's (Hydra's clock may have named
    another on each, hydra issue #2070), and the dir Hydra made for another rank removed;
    with the `trainer.resume` rank 0 chose for a job started again (`restart_resume`).
    The process group is joined here and left at the end, even when the run is refused
    before `run_training` joins it itself. A plain run is its own rank 0."""
    distributed = init_distributed()
    try:
        resume = restart_resume(cfg, hydra_dir, job_id) if distributed.is_main else None
        run_dir_text, resume = distributed.broadcast((str(hydra_dir), resume))
        run_dir = Path(run_dir_text)
        if not distributed.is_main:
            remove_stray_dir(hydra_dir, run_dir=run_dir)
        if resume is not None:
            cfg.trainer.resume = resume
        yield run_dir
    finally:
        shutdown_distributed(distributed)


def restart_resume(cfg: DictConfig, run_dir: Path, job_id: str | None) -> str | None:
    """`auto` for a job started again (`_started_again`) whose run dir holds a step
    checkpoint: the same run continues it, whatever `trainer.resume` says (starting over
    would be refused, after the wait in the queue). None keeps `trainer.resume` (a first
    start, or nothing to continue yet)."""
    resume = cfg.trainer.resume
    if resume in RESUME_LATEST:
        return None
    why = _started_again(run_dir, job_id)
    found = checkpoint_paths(run_dir / "checkpoints") if why is not None else []
    if not found:
        return None
    log.warning(
        "%s: this job was started again; continuing from %s (trainer.resume=auto in place of "
        "trainer.resume=%s)",
        why,
        found[-1],
        "null" if resume is None else resume,
    )
    return "auto"


def _started_again(run_dir: Path, job_id: str | None) -> str | None:
    """Why this job is one its scheduler or launcher started again, or None: a restart
    counter (a SLURM requeue, a torchrun restart), or the submitit job id that this job's
    earlier attempt recorded in the run dir (submitit's local executor requeues without
    SLURM's counter)."""
    counter = restart_count()
    if counter is not None:
        return counter
    if not os.environ.get(SUBMITIT_VARIABLE):
        return None
    if job_id is not None and recorded_job_id(run_dir) == job_id:
        return f"submitit job {job_id} requeued"
    return None
