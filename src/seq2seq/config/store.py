"""Registers the schema in Hydra's ConfigStore, so composition type-checks every key."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from seq2seq.config.schema import TrainConfig

SCHEMA_NAME = "train_schema"


def register_configs() -> None:
    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainConfig)
