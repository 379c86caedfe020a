"""Keys a config has that its schema does not: the ones Hydra's `+key=value` appends.

Composition already refuses a misspelt key in struct mode, but `+` opens the node first,
so `+trainer.max_step=5` would compose and then be ignored without a word.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, OmegaConf

RENAMED_KEYS = {"data.task": "data.builtin"}
"""Keys that were renamed: the old name (on a command line, in a user's config, in an
older checkpoint's saved config) is refused with the new one, or read as the new one."""


def renamed_key_message(key: str) -> str | None:
    """The one-line error for a renamed `key`, or None if it was not renamed."""
    new = RENAMED_KEYS.get(key)
    if new is None:
        return None
    return f"{key} was renamed {new}; write {new}=<value> instead"


def with_renamed_keys(config: dict[str, object]) -> dict[str, object]:
    """A saved config (a checkpoint's, as plain data) with its renamed keys under their
    new names, so an older run still loads."""
    for old, new in RENAMED_KEYS.items():
        old_node, old_leaf = old.rsplit(".", 1)
        new_node, new_leaf = new.rsplit(".", 1)
        section = config.get(old_node)
        if isinstance(section, dict) and old_leaf in section and old_node == new_node:
            section[new_leaf] = section.pop(old_leaf)
    return config


def check_known_keys(node: DictConfig, *, prefix: str = "") -> None:
    """Raise ValueError naming the first key of `node` (or of a nested node) that its
    dataclass does not declare, with the keys it does declare."""
    schema = OmegaConf.get_type(node)
    if schema is None or not is_dataclass(schema):
        return
    known = [field.name for field in fields(schema)]
    for key in node:
        name = f"{prefix}{key!s}"
        if key not in known:
            renamed = renamed_key_message(name)
            if renamed is not None:
                raise ValueError(renamed)
            raise ValueError(
                f"{name} is not a setting (added with +{name}=...?); "
                f"valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: {known}"
            )
        child = node[key]
        if isinstance(child, DictConfig):
            check_known_keys(child, prefix=f"{name}.")
