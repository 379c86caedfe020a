"""A run made before a setting existed is not "another config" for lacking it, as long as
the setting is at its default now; at another value it is."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from seq2seq.training.config_diff import check_same_model, check_same_result

Compose = Callable[..., DictConfig]


def _older(config_text: str, *missing: str) -> str:
    """The config as a version without the settings `missing` (`section.key`) wrote it."""
    tree = yaml.safe_load(config_text)
    for dotted in missing:
        section, key = dotted.split(".")
        del tree[section][key]
    return yaml.safe_dump(tree)


def test_settings_added_since_a_run_are_the_same_at_their_defaults(
    compose_config: Compose,
) -> None:
    current = OmegaConf.to_yaml(compose_config("experiment=toy_reverse"), resolve=True)
    saved = _older(current, "data.streaming", "tokenizer.train_examples", "trainer.strategy")
    check_same_result(saved, current, source="old run")
    check_same_model(saved, current, source="old checkpoint")


def test_a_setting_added_since_a_run_at_another_value_differs(compose_config: Compose) -> None:
    current = OmegaConf.to_yaml(
        compose_config("experiment=toy_reverse", "tokenizer.train_examples=50"), resolve=True
    )
    saved = _older(current, "tokenizer.train_examples")
    with pytest.raises(ValueError, match=r"tokenizer.train_examples: finished with None vs now 50"):
        check_same_result(saved, current, source="old run")
    with pytest.raises(ValueError, match=r"tokenizer.train_examples: checkpoint None vs now 50"):
        check_same_model(saved, current, source="old checkpoint")
