"""configs/hparams_search/ and configs/hydra/launcher/: they compose with the plugins of
the `sweep` extra, every value of the search space is a valid config, and a 2-trial
Optuna sweep of a tiny model runs. Skipped where the plugins are not installed."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.store import CONFIG_MODULE, builtin_options
from seq2seq.jobs.checks import check_config

optuna_sweeper = pytest.importorskip(
    "hydra_plugins.hydra_optuna_sweeper._impl",
    reason="the Optuna sweeper is in the sweep extra: pip install -e '.[sweep]'",
)
optuna = pytest.importorskip("optuna")

Sweep = Callable[..., "subprocess.CompletedProcess[str]"]
SEARCHES = builtin_options("hparams_search")


def compose_train(*overrides: str, hydra: bool = True) -> DictConfig:
    """The train config; with `hydra`, its hydra node (sweeper, launcher) too."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def search_space(cfg: DictConfig) -> dict[str, Any]:
    """hydra.sweeper.params as the plugin turns them into Optuna distributions."""
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    distributions, fixed = optuna_sweeper.create_params_from_overrides(params)
    assert not fixed, f"not a sweep: {fixed}"
    return distributions


def test_toy_reverse_search_maximizes_exact_match() -> None:
    cfg = compose_train("hparams_search=toy_reverse_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.runtime.choices["experiment"] == "toy_reverse"
    assert cfg.trainer.monitor == "exact_match" and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed == 1234 and sweeper.n_jobs == 1 and sweeper.n_trials >= 10
    space = search_space(cfg)
    lr = space["optim.lr"]
    assert isinstance(lr, optuna.distributions.LogUniformDistribution)
    assert isinstance(space["model.dropout"], optuna.distributions.UniformDistribution)
    # A config group is swept like a key: its options are the categorical choices.
    assert space["norm"].choices == ("layernorm", "rezero", "prescalenorm")
    assert space["model.decoder.self_attention"].choices == ("softmax", "causal_linear")
    assert set(space) >= {"schedule.warmup_steps", "model.encoder.layers", "model.decoder.layers"}


def test_generic_search_minimizes_the_loss() -> None:
    cfg = compose_train("experiment=toy_reverse", "hparams_search=optuna")
    assert cfg.trainer.monitor == "loss" and cfg.hydra.sweeper.direction == "minimize"
    assert cfg.hydra.sweeper.sampler.seed == 1234


@pytest.mark.parametrize("search", SEARCHES)
def test_every_choice_of_the_search_space_is_a_valid_config(search: str) -> None:
    """Each categorical value and each interval end composes, reaches the config field
    it names and passes validation, so no trial fails on its configuration and no trial
    silently trains with another value."""
    base = (f"hparams_search={search}", "experiment=toy_reverse")
    space = search_space(compose_train(*base))
    assert len(space) >= 4
    for key, distribution in space.items():
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            values = list(distribution.choices)
        else:
            values = [distribution.low, distribution.high]
        # A config group (`norm`) is packaged into `model` as the field of its own name.
        field = key if "." in key else f"model.{key}"
        for value in values:
            cfg = compose_train(*base, f"{key}={value}", hydra=False)
            check_config(OmegaConf.to_object(cfg))  # type: ignore[arg-type]
            held = OmegaConf.select(cfg, field)
            if isinstance(value, float):
                assert held == pytest.approx(value), (key, value, held)
            else:
                assert held == value, (key, value, held)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [("joblib_local", "JoblibLauncher"), ("slurm", "SlurmLauncher")],
)
def test_launcher_configs_compose(launcher: str, target: str) -> None:
    module = f"hydra_plugins.hydra_{launcher.split('_')[0].replace('slurm', 'submitit')}_launcher"
    pytest.importorskip(module, reason="the launchers are in the sweep extra")
    cfg = compose_train(f"hydra/launcher={launcher}", "experiment=toy_reverse")
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "joblib_local":
        assert cfg.hydra.launcher.n_jobs == 2
    else:
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min > 0
        assert cfg.hydra.launcher.max_num_timeout == 0


def test_two_trial_optuna_sweep(
    run_sweep: Sweep, summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep,
        "hparams_search=toy_reverse_optuna",
        "hydra.sweeper.n_trials=2",
        # Fixed on the command line, so dropped from the search: keeps the trials tiny.
        "model.encoder.layers=1",
        "model.decoder.layers=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(path.name for path in sweep.iterdir() if path.is_dir()) == ["0", "1"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text(encoding="utf-8"))
    assert results["name"] == "optuna" and 0.0 <= results["best_value"] <= 1.0
    assert "model.encoder.layers" not in results["best_params"]
    assert {"optim.lr", "norm", "model.decoder.self_attention"} <= set(results["best_params"])

    summarize_sweep.summarize(sweep)
    with open(sweep / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["finished", "finished"]
    assert float(rows[0]["best/exact_match"]) == pytest.approx(results["best_value"])
    assert "optim.lr" in rows[0]  # sampled values differ between trials: swept columns


def test_a_failing_trial_does_not_stop_the_optuna_sweep(
    run_sweep: Sweep, summarize_sweep: ModuleType, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep,
        "hparams_search=toy_reverse_optuna",
        # Only model.heads is searched; seed 10 proposes heads=3 (invalid with d_model=32)
        # first and heads=4 second.
        "hydra.sweeper.params=null",
        "model.heads=choice(3,4)",
        "hydra.sweeper.sampler.seed=10",
        "hydra.sweeper.n_trials=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text(encoding="utf-8"))
    assert results["best_params"] == {"model.heads": 4}
    summarize_sweep.summarize(sweep)
    with open(sweep / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["run"], row["status"], row["model.heads"]) for row in rows] == [
        ("1", "finished", "4"),
        ("0", "failed", "3"),
    ]


def test_a_search_whose_every_trial_fails_ends_in_one_error_line(
    run_sweep: Sweep, tmp_path: Path
) -> None:
    """Optuna's own ending (`ValueError: No trials are completed yet.` and a traceback)
    would hide the reason: each trial's failure.json holds it."""
    sweep = tmp_path / "sweep"
    done = run_sweep(
        sweep,
        "hparams_search=toy_reverse_optuna",
        "hydra.sweeper.params=null",
        "model.heads=choice(3,5)",  # neither divides d_model=32: every trial is refused
        "hydra.sweeper.n_trials=2",
        full_error=False,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "seq2seq-train: error: every trial of the search failed; the warnings above and "
        "each trial's failure.json (in hydra.sweep.dir) say why"
    )
    for trial in ("0", "1"):
        failure = json.loads((sweep / trial / "failure.json").read_text(encoding="utf-8"))
        assert failure["stopped"] == "failed" and "model.heads" in failure["error"]
    assert not (sweep / "optimization_results.yaml").exists()
