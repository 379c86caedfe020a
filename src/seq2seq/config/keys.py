"""Keys a config has that its schema does not: the ones Hydra's `+key=value` appends.

Composition already refuses a misspelt key in struct mode, but `+` opens the node first,
so `+trainer.max_step=5` would compose and then be ignored without a word.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from omegaconf import DictConfig, OmegaConf


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
            raise ValueError(
                f"{name} is not a setting (added with +{name}=...?); "
                f"valid keys{' of ' + prefix.rstrip('.') if prefix else ''}: {known}"
            )
        child = node[key]
        if isinstance(child, DictConfig):
            check_known_keys(child, prefix=f"{name}.")
