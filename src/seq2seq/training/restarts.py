"""Whether this process is a job that its scheduler or launcher started again.

SLURM requeues a job under the same job id (submitit's requeue on the time-limit warning,
`scontrol requeue`, `--requeue` after a node failure or a preemption) and counts it in
SLURM_RESTART_COUNT; torchrun restarts its workers after a failure (`--max-restarts`) and
counts it in TORCHELASTIC_RESTART_COUNT. Such a job is the same run started again, in the
same run dir: it continues from its latest checkpoint whatever `trainer.resume` says
(`seq2seq-train` logs one warning line), rather than start over or be refused after
waiting in the queue.
"""

from __future__ import annotations

import os

RESTART_COUNTERS = ("SLURM_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT")


def restart_count() -> str | None:
    """`NAME=N` for the first restart counter above 0 in the environment; None when this
    is the job's first start."""
    for name in RESTART_COUNTERS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return f"{name}={value}"
    return None
