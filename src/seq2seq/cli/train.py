"""`seq2seq-train`: compose the config from the command line and run the training job.

    seq2seq-train experiment=toy_reverse
    seq2seq-train experiment=toy_reverse model.encoder.layers=4 norm=rezero activation=swiglu
    seq2seq-train -m norm=layernorm,rezero,prescalenorm      # a Hydra multirun sweep
    seq2seq-train --config-dir my_configs experiment=my_task  # configs of your own

`python -m seq2seq.cli.train ...` is the same program. The run itself is
`seq2seq.jobs.train.run_training`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seq2seq.cli.errors import USAGE_ERRORS, SweepJobFailed, run_cli, usage_errors
from seq2seq.config.command_line import typed_overrides
from seq2seq.config.recipes import warn_recipe_overrides
from seq2seq.config.store import CONFIG_MODULE, CONFIG_PATH, register_configs
from seq2seq.config.sweep_check import check_sweep
from seq2seq.jobs.checks import check_search_direction, checked_config
from seq2seq.jobs.train import run_training
from seq2seq.training.run_files import (
    FAILURE_NAME,
    HYDRA_SUBDIR,
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
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    fresh = not any(run_dir.iterdir())  # made by Hydra for this run: nothing logged yet
    command_line = typed_overrides()
    record = _hydra_record(cfg)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            with usage_errors("seq2seq-train"), run_dir_lock(run_dir):
                warn_recipe_overrides(cfg, command_line, hydra_cfg.runtime.choices)
                outcome = run_training(cfg, run_dir, command_line=command_line, hydra_files=record)
        except BaseException:
            if fresh:
                remove_refused_run(run_dir)
            raise
        # Stopped by a signal or a fault, the run is not done: a non-zero status keeps
        # `seq2seq-train ... && next-step` and job schedulers from taking it as finished.
        # The trainer has logged the fault's one error line.
        if outcome.fault is not None:
            raise SystemExit(1)
        status = signal_status(run_dir) if outcome.trained else None
        if status is not None:
            raise SystemExit(status)
        return outcome.objective
    try:
        with run_dir_lock(run_dir, setting="hydra.sweep.dir"):
            return _sweep_job(cfg, run_dir, command_line, record)
    except RunDirBusy as error:
        # Another process's job: its dir is left as it is, no failure.json.
        raise SweepJobFailed(f"sweep job {run_dir} not run: {error}") from error


def _sweep_job(
    cfg: DictConfig, run_dir: Path, command_line: list[str], record: dict[str, str]
) -> float:
    warn_recipe_overrides(cfg, command_line, HydraConfig.get().runtime.choices)
    # A sweep job's dir shows up in scripts/summarize_sweep.py from the start (by its
    # .hydra/overrides.yaml), even if the job is killed while preparing data; an earlier
    # run's record there is replaced only once this job is accepted.
    if not (run_dir / HYDRA_SUBDIR).exists():
        write_files(run_dir / HYDRA_SUBDIR, record)
    # A failing job leaves failure.json and re-raises: Hydra's launchers run the other
    # jobs first, Optuna marks the trial failed.
    try:
        outcome = run_training(cfg, run_dir, command_line=command_line, hydra_files=record)
        if outcome.fault is not None:
            raise TrainingFault(outcome.fault)
        # The signal was meant for the whole sweep: end the process rather than let the
        # launcher start the next job; `trainer.resume=auto` continues the sweep.
        status = signal_status(run_dir) if outcome.trained else None
        if status is not None:
            log.warning("ending the sweep after job %s, stopped by a signal", run_dir)
            raise SystemExit(status)
        # An earlier attempt's failure (a refused config) is no longer this job's state.
        (run_dir / FAILURE_NAME).unlink(missing_ok=True)
        if math.isnan(outcome.objective):
            raise RuntimeError(
                f"run {run_dir} has no finite {cfg.trainer.monitor}: it stopped before its "
                "first validation, or every validation gave nan"
            )
        return outcome.objective
    except Exception as error:
        write_failure(run_dir, error)
        if isinstance(error, (*USAGE_ERRORS, TrainingFault)):
            raise SweepJobFailed(f"sweep job {run_dir} failed: {error}") from error
        raise


def _check_sweep_jobs(argv: list[str]) -> None:
    """Every job of a grid sweep is checked before the first one trains, and a search's
    direction against the figure it optimizes."""
    check_sweep(CONFIG_MODULE, "train", argv, checked_config, check_launch=check_search_direction)


def main() -> None:
    """`seq2seq-train`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-train", _hydra_main, before=_check_sweep_jobs)


if __name__ == "__main__":
    main()
