"""The grid a `-m` command line launches is expanded and checked before any job runs."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig

from seq2seq.config.store import CONFIG_MODULE
from seq2seq.config.sweep_check import check_sweep, launch_config, sweep_jobs
from seq2seq.jobs.checks import check_search_direction, checked_config


def test_the_grid_is_every_combination_in_the_launch_order() -> None:
    arguments = ["experiment=toy_reverse", "norm=layernorm,rezero", "seed=1,2"]
    jobs = sweep_jobs(launch_config(CONFIG_MODULE, "train", arguments), arguments)
    assert [job[1:] for job in jobs] == [
        ["norm=layernorm", "seed=1"],
        ["norm=layernorm", "seed=2"],
        ["norm=rezero", "seed=1"],
        ["norm=rezero", "seed=2"],
    ]


def test_a_search_that_proposes_its_own_jobs_is_left_to_them() -> None:
    arguments = ["hparams_search=optuna", "experiment=toy_reverse"]
    assert sweep_jobs(launch_config(CONFIG_MODULE, "train", arguments), arguments) == []


def test_the_first_bad_job_is_named_with_what_sets_it_apart() -> None:
    with pytest.raises(
        ValueError,
        match=r"^sweep job #1 \(optim\.lr=-1\): optim\.lr=-1(\.0)? must be positive and finite; "
        r"no job was started$",
    ):
        check_sweep(
            CONFIG_MODULE,
            "train",
            ["-m", "experiment=toy_reverse", "optim.lr=0.001,-1"],
            checked_config,
        )


def test_single_runs_and_runtime_interpolations_are_not_checked_ahead() -> None:
    seen: list[list[str]] = []

    def check(cfg: DictConfig, job: list[str]) -> None:
        seen.append(job)
        str(cfg.data.data_files.train)  # resolves ${hydra:job.num}, set only in a running job

    check_sweep(CONFIG_MODULE, "train", ["experiment=toy_reverse", "seed=1"], check)
    assert seen == []
    check_sweep(
        CONFIG_MODULE,
        "train",
        ["-m", "experiment=toy_reverse", "data.data_files.train=f${hydra:job.num}", "seed=1,2"],
        check,
    )
    assert len(seen) == 1  # the first job showed the sweep cannot be checked ahead


def test_a_search_must_seek_the_better_end_of_its_monitor() -> None:
    command = ["-m", "hparams_search=optuna", "experiment=toy_reverse"]
    check_sweep(
        CONFIG_MODULE, "train", command, checked_config, check_launch=check_search_direction
    )
    with pytest.raises(
        ValueError,
        match=r"^hydra\.sweeper\.direction='minimize', but the search optimizes "
        r"trainer\.monitor='exact_match', which is better higher: set "
        r"hydra\.sweeper\.direction=maximize$",
    ):
        check_sweep(
            CONFIG_MODULE,
            "train",
            [*command, "trainer.monitor=exact_match"],
            checked_config,
            check_launch=check_search_direction,
        )
