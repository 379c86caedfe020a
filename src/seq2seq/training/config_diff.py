"""Refuse to load a checkpoint into a model configured differently, naming the keys."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from seq2seq.config.schema import TrainConfig
from seq2seq.training.logger import flatten

# Settings that change parameter shapes or meaning; everything else may differ on resume.
ARCHITECTURE_SECTIONS = ("task", "model", "tokenizer")
# Where tokenizers are cached, not what they are (a checkpoint carries its own); what runs
# the linear attentions, which computes the same (to float32 rounding) on any device.
NOT_ARCHITECTURE = ("tokenizer.cache_dir", "model.linear.backend")
# What a resumed run cannot change either: the optimizer's saved state belongs to its
# kind, and the best value and patience count belong to the monitored figure.
RESUME_SETTINGS = ("optim.name", "trainer.monitor")


def _settings(config_text: str, also: Sequence[str]) -> dict[str, Any]:
    tree = yaml.safe_load(config_text) or {}
    flat = flatten({key: tree.get(key, {}) for key in {*ARCHITECTURE_SECTIONS, "optim", "trainer"}})
    return {
        key: value
        for key, value in flat.items()
        if (key.split(".")[0] in ARCHITECTURE_SECTIONS and key not in NOT_ARCHITECTURE)
        or key in also
    }


RESUME_ADVICE = "use the same settings to resume, or start a fresh run dir"


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    """Every setting's default, flattened as a run's config is."""
    schema = OmegaConf.structured(TrainConfig)
    return flatten(OmegaConf.to_container(schema, enum_to_str=True))  # type: ignore[arg-type]


def _newer_default(key: str, saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """A setting added after the saved run was made, at its default now: the run did what
    the default does (an older run is not another config for lacking the key)."""
    defaults = _schema_defaults()
    return key not in saved and key in defaults and current.get(key) == defaults[key]


def _differences(saved: dict[str, Any], current: dict[str, Any], then: str) -> str:
    """`key: <then> old vs now new` for every differing key; empty when none differs."""
    differing = sorted(
        key
        for key in saved.keys() | current.keys()
        if saved.get(key) != current.get(key) and not _newer_default(key, saved, current)
    )
    return ", ".join(
        f"{key}: {then} {saved.get(key)!r} vs now {current.get(key)!r}" for key in differing
    )


def check_same_model(
    saved_config: str,
    current_config: str,
    *,
    source: Path | str,
    advice: str = RESUME_ADVICE,
    also: Sequence[str] = (),
) -> None:
    """`also`: settings beyond the model and tokenizer sections that must match too."""
    details = _differences(
        _settings(saved_config, also), _settings(current_config, also), "checkpoint"
    )
    if details:
        raise ValueError(
            f"checkpoint {source} was trained with a different config ({details}); {advice}"
        )


def _ema_settings(config_text: str) -> tuple[Any, bool]:
    """(trainer.ema_decay, trainer.ema_eval) of a config; a config older than them had no EMA."""
    trainer = (yaml.safe_load(config_text) or {}).get("trainer") or {}
    return trainer.get("ema_decay"), bool(trainer.get("ema_eval", True))


def check_same_ema(saved_config: str, current_config: str, *, source: Path | str) -> None:
    """A resume may change `trainer.ema_decay`'s value, but not switch the EMA on (there is
    none saved to go on from) or off, nor change `trainer.ema_eval` (the best figure so far,
    and best.pt, are of the weights it chose)."""
    (saved_decay, saved_eval), (decay, evaluate) = (
        _ema_settings(saved_config),
        _ema_settings(current_config),
    )
    if (saved_decay is None) != (decay is None):
        raise ValueError(
            f"checkpoint {source} was trained with trainer.ema_decay={saved_decay} but now "
            f"trainer.ema_decay={decay}: a resume may change the EMA's decay, not switch the "
            f"EMA on or off; resume with trainer.ema_decay="
            f"{'null' if saved_decay is None else saved_decay}, or start a fresh run dir"
        )
    if decay is not None and saved_eval != evaluate:
        raise ValueError(
            f"checkpoint {source} was validated with trainer.ema_eval={saved_eval} but now "
            f"trainer.ema_eval={evaluate}: its best figure and best.pt are of those weights; "
            f"resume with trainer.ema_eval={str(saved_eval).lower()}, or start a fresh run dir"
        )


# What a finished run's result does not depend on: how the run was executed and reported,
# where caches live, and the limits (checked apart: a raised limit trains on).
RESULT_FREE = (
    *NOT_ARCHITECTURE,
    "data.num_workers",
    "trainer.resume",
    "trainer.progress",
    "trainer.threads",
    "trainer.device",
    "trainer.compile",
    "trainer.activation_checkpointing",
    "trainer.log_every",
    "trainer.num_samples",
    "trainer.keep_last",
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time",
    "trainer.patience",
)


def _result_settings(config_text: str) -> dict[str, Any]:
    flat = flatten(yaml.safe_load(config_text) or {})
    return {key: value for key, value in flat.items() if key not in RESULT_FREE}


def check_same_result(saved_config: str, current_config: str, *, source: Path | str) -> None:
    """A finished run's saved result answers for `current_config` only if every setting
    the result depends on is the same (a sweep rerun into its old dir with another
    `optim.lr` must not return the old runs' figures)."""
    details = _differences(
        _result_settings(saved_config), _result_settings(current_config), "finished with"
    )
    if details:
        raise ValueError(
            f"{source} holds a finished run with other settings ({details}); its result "
            "is not this config's: train into another hydra.run.dir (hydra.sweep.dir for a "
            "sweep), or move that run away"
        )
