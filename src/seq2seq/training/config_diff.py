"""Refuse to load a checkpoint into a model configured differently, naming the keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from seq2seq.training.logger import flatten

# Settings that change parameter shapes or meaning; everything else may differ on resume.
ARCHITECTURE_SECTIONS = ("model", "tokenizer")


def _sections(config_text: str) -> dict[str, Any]:
    tree = yaml.safe_load(config_text) or {}
    return flatten({key: tree.get(key, {}) for key in ARCHITECTURE_SECTIONS})


RESUME_ADVICE = "use the same settings to resume, or start a fresh run dir"


def check_same_model(
    saved_config: str, current_config: str, *, source: Path | str, advice: str = RESUME_ADVICE
) -> None:
    saved, current = _sections(saved_config), _sections(current_config)
    differing = sorted(
        key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key)
    )
    if differing:
        details = ", ".join(
            f"{key}: checkpoint {saved.get(key)!r} vs now {current.get(key)!r}" for key in differing
        )
        raise ValueError(
            f"checkpoint {source} was trained with a different model config ({details}); {advice}"
        )
