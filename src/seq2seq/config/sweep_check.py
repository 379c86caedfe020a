"""Check every job of a grid sweep before the first one runs.

Hydra's basic sweeper composes each job only when its turn comes, so a bad value in the
last job of a sweep was found after all the others had trained. `check_sweep` expands the
sweep as that sweeper does (the command line plus `hydra.sweeper.params`), composes every
job and runs the caller's checks on it. A sweeper that proposes jobs as it goes (Optuna)
is left alone: each of its trials is checked when it starts, and a bad one fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

MULTIRUN_FLAGS = ("-m", "--multirun")
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"

JobCheck = Callable[[DictConfig, list[str]], object]
"""`(composed job config, the job's overrides)`; raises ValueError if bad."""


def launch_config(config_module: str, config_name: str, arguments: Sequence[str]) -> DictConfig:
    """The config of the sweep's fixed overrides, with its `hydra` node (the sweeper's
    settings): what every job shares."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(list(arguments))
    fixed = [str(o.input_line) for o in overrides if not o.is_sweep_override()]
    with initialize_config_module(config_module=config_module, version_base="1.3"):
        return compose(config_name, overrides=fixed, return_hydra_config=True)


def sweep_jobs(launch: DictConfig, arguments: Sequence[str]) -> list[list[str]]:
    """The overrides of every job that `-m <arguments>` launches with the basic sweeper
    (`launch`: their `launch_config`); empty for another sweeper."""
    sweeper = launch.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return []
    node = sweeper.get("params")
    params = {} if node is None else OmegaConf.to_container(node, resolve=False)
    assert isinstance(params, dict)
    parser = OverridesParser.create()
    every = parser.parse_overrides([*(f"{k!s}={v!s}" for k, v in params.items()), *arguments])
    return [job for batch in BasicSweeper.split_arguments(every, None) for job in batch]


def _swept(job: list[str], jobs: list[list[str]]) -> str:
    """The overrides that set this job apart from the others."""
    common = set.intersection(*(set(other) for other in jobs))
    return " ".join(item for item in job if item not in common) or " ".join(job)


def check_sweep(
    config_module: str,
    config_name: str,
    argv: Sequence[str],
    check: JobCheck,
    *,
    check_launch: Callable[[DictConfig], None] | None = None,
) -> None:
    """For a multirun command line `argv` (without the program): `check_launch` the
    sweep's shared config (with its `hydra` node), then compose every job and `check`
    it, raising one ValueError that names the first bad job. Other command lines, and
    ones with Hydra flags besides -m (their values are not overrides), pass."""
    if not any(arg in MULTIRUN_FLAGS for arg in argv):
        return
    arguments = [arg for arg in argv if arg not in MULTIRUN_FLAGS]
    if any(arg.startswith("-") for arg in arguments):
        return
    launch = launch_config(config_module, config_name, arguments)
    if check_launch is not None:
        check_launch(launch)
    jobs = sweep_jobs(launch, arguments)
    with initialize_config_module(config_module=config_module, version_base="1.3"):
        for number, job in enumerate(jobs):
            try:
                check(compose(config_name, overrides=job), job)
            except OmegaConfBaseException:
                # An interpolation of the job's runtime (${hydra:job.num}) resolves only
                # when the job starts: the sweep cannot be checked ahead, its jobs check
                # themselves.
                return
            except ValueError as error:
                raise ValueError(
                    f"sweep job #{number} ({_swept(job, jobs)}): {error}; no job was started"
                ) from error
