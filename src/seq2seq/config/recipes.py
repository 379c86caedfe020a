"""Say so when a recipe's value wins over a group the user chose on the same command line.

A recipe (`experiment=...`) picks groups and then sets values of its own, which Hydra
applies after the groups: `experiment=g2p_cmudict model=tiny` keeps the recipe's
`model.d_model=256`. That is Hydra's order and a recipe needs it, but it surprises: each
such value gets one warning line naming the recipe, the key, both values and the override
that would win. (The `trainer` group comes after the recipe in the defaults list, so
`trainer=debug` beside a recipe does what it says.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.command_line import typed_keys
from seq2seq.config.store import CONFIG_MODULE

log = logging.getLogger("seq2seq.config")

RECIPE_GROUP = "experiment"
# Groups whose options are not parts of a model recipe.
NOT_RECIPE_PARTS = ("experiment", "hparams_search", "trainer", "hydra")


def _package(text: str, group: str) -> str:
    """Where a group file's keys go: its `# @package` header, or the group's own name."""
    for line in text.splitlines():
        if line.startswith("# @package"):
            return line.removeprefix("# @package").strip()
    return group


def _leaves(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: tree}


def _group_values(group: str, option: str) -> dict[str, Any] | None:
    """The values a built-in group option sets, by full key; None if it is not built in
    (a user's `--config-dir` option)."""
    path = resources.files(CONFIG_MODULE) / group / f"{option}.yaml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    tree = yaml.safe_load(text) or {}
    tree.pop("defaults", None)
    package = _package(text, group)
    return _leaves(tree, "" if package == "_global_" else package)


def warn_recipe_overrides(
    cfg: DictConfig, command_line: Sequence[str], choices: Mapping[str, Any]
) -> list[str]:
    """Log (and return) one line per value of a group chosen on `command_line` that the
    recipe replaced; `choices`: Hydra's runtime choices (group -> option)."""
    recipe = choices.get(RECIPE_GROUP)
    if recipe is None:
        return []
    typed = typed_keys(command_line)
    lines = []
    for group in typed:
        if group in NOT_RECIPE_PARTS or "." in group or choices.get(group) is None:
            continue
        values = _group_values(group, str(choices[group]))
        for key, value in (values or {}).items():
            if key in typed:
                continue
            final = OmegaConf.select(cfg, key, default=None)
            final = OmegaConf.to_container(final) if isinstance(final, DictConfig) else final
            if final != value and str(final) != str(value):
                lines.append(
                    f"{RECIPE_GROUP}={recipe} sets {key}={final!r} over {group}="
                    f"{choices[group]}'s {value!r}; type {key}=... to change it"
                )
    for line in lines:
        log.warning(line)
    return lines
