"""Refuse to load a checkpoint into a model configured differently, naming the keys."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from seq2seq.training.logger import flatten

# Settings that change parameter shapes or meaning; everything else may differ on resume.
ARCHITECTURE_SECTIONS = ("model", "tokenizer")
# Where tokenizers are cached, not what they are (a checkpoint carries its own).
NOT_ARCHITECTURE = ("tokenizer.cache_dir",)
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


def check_same_model(
    saved_config: str,
    current_config: str,
    *,
    source: Path | str,
    advice: str = RESUME_ADVICE,
    also: Sequence[str] = (),
) -> None:
    """`also`: settings beyond the model and tokenizer sections that must match too."""
    saved, current = _settings(saved_config, also), _settings(current_config, also)
    differing = sorted(
        key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key)
    )
    if differing:
        details = ", ".join(
            f"{key}: checkpoint {saved.get(key)!r} vs now {current.get(key)!r}" for key in differing
        )
        raise ValueError(
            f"checkpoint {source} was trained with a different config ({details}); {advice}"
        )
