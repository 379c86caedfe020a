"""`seq2seq-train`: compose the config from the command line and run the training job.

    seq2seq-train experiment=toy_reverse
    seq2seq-train experiment=toy_reverse model.encoder.layers=4 norm=rezero activation=swiglu
    seq2seq-train -m norm=layernorm,rezero,prescalenorm      # a Hydra multirun sweep
    seq2seq-train --config-dir my_configs experiment=my_task  # configs of your own

`python -m seq2seq.cli.train ...` is the same program. The run itself is
`seq2seq.jobs.train.run_training`.

Under torchrun (one node or many) every rank runs this with its own Hydra config; the ranks
agree on rank 0's run dir (`seq2seq.jobs.ranks`), and a rank other than 0 logs to its
console only (train.log is rank 0's record; torchrun's `--log-dir`/`--tee` or srun's
`--output` keep each rank's console).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seq2seq.cli.errors import USAGE_ERRORS, SweepJobFailed, run_cli, usage_errors
from seq2seq.config.command_line import typed_overrides
from seq2seq.config.recipes import warn_recipe_overrides
from seq2seq.config.store import CONFIG_MODULE, CONFIG_PATH, register_configs
from seq2seq.config.sweep_check import MULTIRUN_FLAGS, check_sweep
from seq2seq.jobs.checks import check_search_direction, checked_config
from seq2seq.jobs.ranks import ranks_joined
from seq2seq.jobs.train import Outcome, run_training
from seq2seq.training.distributed import (
    WORLD_SIZE_VARIABLE,
    adopt_submitit_environment,
    launched_rank,
)
from seq2seq.training.run_files import (
    FAILURE_NAME,
    HYDRA_SUBDIR,
    detach_job_logs,
    remove_refused_run,
    signal_status,
    write_failure,
    write_files,
)
from seq2seq.training.run_lock import RunDirBusy, run_dir_lock

log = logging.getLogger("seq2seq.train")

register_configs()


class TrainingFault(RuntimeError):
    """A sweep job that stopped on a fault (a non-finite step): it has checkpointed and
    written metrics.json; the sweep reports it like a refused job."""


def _hydra_record(cfg: DictConfig) -> dict[str, str]:
    """What Hydra's `output_subdir` would have written: the composed config, Hydra's own
    config and the overrides (scripts/summarize_sweep.py reads the last)."""
    hydra_node = HydraConfig.instance().cfg
    assert hydra_node is not None
    return {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml(hydra_node),
        "overrides.yaml": OmegaConf.to_yaml(HydraConfig.get().overrides.task),
    }


@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    adopt_submitit_environment()  # a task of a multi-task submitit job: torchrun's variables
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    main_rank = launched_rank() == 0
    if not main_rank:
        detach_job_logs(run_dir)  # before its first line: train.log is rank 0's
    fresh = not any(run_dir.iterdir())  # made by Hydra for this run: nothing logged yet
    command_line = typed_overrides()
    record = _hydra_record(cfg)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            with (
                usage_errors("seq2seq-train"),
                run_dir_lock(run_dir),
                ranks_joined(cfg, run_dir, job_id=_job_id()) as shared_dir,
            ):
                warn_recipe_overrides(cfg, command_line, hydra_cfg.runtime.choices)
                outcome = run_training(
                    cfg, shared_dir, command_line=command_line, hydra_files=record
                )
        except BaseException:
            if fresh and main_rank:
                remove_refused_run(run_dir)
            raise
        # Stopped by a signal or a fault, the run is not done: a non-zero status keeps
        # `seq2seq-train ... && next-step` and job schedulers from taking it as finished.
        # The trainer has logged the fault's one error line.
        if outcome.fault is not None:
            raise SystemExit(1)
        status = _signal_status(shared_dir, outcome, main_rank=main_rank)
        if status is not None:
            raise SystemExit(status)
        return outcome.objective
    try:
        with (
            run_dir_lock(run_dir, setting="hydra.sweep.dir"),
            ranks_joined(cfg, run_dir, job_id=_job_id()) as shared_dir,
        ):
            return _sweep_job(cfg, shared_dir, command_line, record, main_rank=main_rank)
    except RunDirBusy as error:
        # Another process's job: its dir is left as it is, no failure.json.
        raise SweepJobFailed(f"sweep job {run_dir} not run: {error}") from error


def _job_id() -> str | None:
    """Hydra's job id: the launcher's (submitit's) id of this job, None in a plain run."""
    hydra_node = cast(DictConfig, HydraConfig.instance().cfg)  # typed as its schema
    job_id = OmegaConf.select(hydra_node, "hydra.job.id")
    return None if job_id is None else str(job_id)


def _signal_status(run_dir: Path, outcome: Outcome, *, main_rank: bool) -> int | None:
    """The exit status of a run a signal stopped (it has checkpointed), from rank 0's
    metrics.json. Another rank has none of its own: rank 0 writes that file after the
    others have returned (and an earlier stop's may still be there), so their status is
    0 and the launcher reports rank 0's."""
    if not (outcome.trained and main_rank):
        return None
    return signal_status(run_dir)


def _sweep_job(
    cfg: DictConfig,
    run_dir: Path,
    command_line: list[str],
    record: dict[str, str],
    *,
    main_rank: bool = True,
) -> float:
    warn_recipe_overrides(cfg, command_line, HydraConfig.get().runtime.choices)
    # A sweep job's dir shows up in scripts/summarize_sweep.py from the start (by its
    # .hydra/overrides.yaml), even if the job is killed while preparing data; an earlier
    # run's record there is replaced only once this job is accepted. Rank 0 (of a job of
    # several submitit tasks) alone writes the job's files.
    if main_rank and not (run_dir / HYDRA_SUBDIR).exists():
        write_files(run_dir / HYDRA_SUBDIR, record)
    # A failing job leaves failure.json and re-raises: Hydra's launchers run the other
    # jobs first, Optuna marks the trial failed.
    try:
        outcome = run_training(cfg, run_dir, command_line=command_line, hydra_files=record)
        if outcome.fault is not None:
            raise TrainingFault(outcome.fault)
        # The signal was meant for the whole sweep: end the process rather than let the
        # launcher start the next job; `trainer.resume=auto` continues the sweep.
        status = _signal_status(run_dir, outcome, main_rank=main_rank)
        if status is not None:
            log.warning("ending the sweep after job %s, stopped by a signal", run_dir)
            raise SystemExit(status)
        if main_rank:  # an earlier attempt's failure (a refused config) is no longer its state
            (run_dir / FAILURE_NAME).unlink(missing_ok=True)
        if math.isnan(outcome.objective):
            raise RuntimeError(
                f"run {run_dir} has no finite {cfg.trainer.monitor}: it stopped before its "
                "first validation, or every validation gave nan"
            )
        return outcome.objective
    except Exception as error:
        if main_rank:
            write_failure(run_dir, error)
        if isinstance(error, (*USAGE_ERRORS, TrainingFault)):
            raise SweepJobFailed(f"sweep job {run_dir} failed: {error}") from error
        raise


def _check_sweep_jobs(argv: list[str]) -> None:
    """Every job of a grid sweep is checked before the first one trains, and a search's
    direction against the figure it optimizes. A sweep under torchrun is refused."""
    _refuse_sweep_under_torchrun(argv)
    check_sweep(CONFIG_MODULE, "train", argv, checked_config, check_launch=check_search_direction)


def _refuse_sweep_under_torchrun(argv: list[str]) -> None:
    """Every rank would run a sweep of its own: its own sweep dir and trials, and a new
    process group for each job. A ValueError naming what to do instead."""
    world_size = int(os.environ.get(WORLD_SIZE_VARIABLE, "1"))
    multirun = any(arg in MULTIRUN_FLAGS or arg == "hydra.mode=MULTIRUN" for arg in argv)
    if multirun and world_size > 1:
        raise ValueError(
            f"--multirun under torchrun ({WORLD_SIZE_VARIABLE}={world_size}) is not supported: "
            "every rank would run a sweep of its own; launch one torchrun per job (each with "
            "its own hydra.run.dir), or sweep with hydra/launcher=slurm and "
            "hydra.launcher.tasks_per_node / nodes for each job's processes"
        )


def main() -> None:
    """`seq2seq-train`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-train", _hydra_main, before=_check_sweep_jobs)


if __name__ == "__main__":
    main()
