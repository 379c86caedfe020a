"""Where the built-in configs are, and the schemas registered in Hydra's ConfigStore, so
composition type-checks every key."""

from __future__ import annotations

from importlib import resources

from hydra.core.config_store import ConfigStore

from seq2seq.config.generate import GenerateConfig
from seq2seq.config.schema import TrainConfig

CONFIG_MODULE = "seq2seq.configs"
"""The package of the built-in configs: the repository's `configs/`, shipped in the wheel."""
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
"""Hydra's search-path entry for them; users add their own with `--config-dir`."""
TRAIN_SCHEMA = "train_schema"
GENERATE_SCHEMA = "generate_schema"


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name=TRAIN_SCHEMA, node=TrainConfig)
    store.store(name=GENERATE_SCHEMA, node=GenerateConfig)


def builtin_options(group: str) -> list[str]:
    """The names of a config group's built-in options (`experiment` -> `toy_reverse`, ...)."""
    folder = resources.files(CONFIG_MODULE) / group
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )
