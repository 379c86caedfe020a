"""The CMUdict G2P recipes compose into valid configs, and the tiny one trains end to end."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.schema import TrainConfig
from seq2seq.config.store import builtin_options
from seq2seq.data.cmudict import pronunciations, split_of
from seq2seq.data.prepare import load_raw_splits
from seq2seq.evaluation import get_metric
from seq2seq.jobs.checks import check_config
from seq2seq.jobs.train import train

Compose = Callable[..., DictConfig]

G2P_EXPERIMENTS = [name for name in builtin_options("experiment") if name.startswith("g2p_cmudict")]


def _config(compose_config: Compose, *overrides: str) -> TrainConfig:
    cfg = OmegaConf.to_object(compose_config(*overrides, tiny=False))
    assert isinstance(cfg, TrainConfig)
    return cfg


def test_all_five_recipes_exist() -> None:
    assert G2P_EXPERIMENTS == [
        "g2p_cmudict",
        "g2p_cmudict_causal_linear",
        "g2p_cmudict_cpu",
        "g2p_cmudict_small",
        "g2p_cmudict_tiny",
    ]


@pytest.mark.parametrize("experiment", G2P_EXPERIMENTS)
def test_recipe_is_valid_g2p(experiment: str, compose_config: Compose) -> None:
    cfg = _config(compose_config, f"experiment={experiment}")
    check_config(cfg)
    assert cfg.data.builtin == "g2p_cmudict"
    # The word as typed, letter by letter; phonemes as words.
    assert (cfg.tokenizer.source_model_type, cfg.tokenizer.model_type) == ("char", "word")
    assert not cfg.tokenizer.shared
    assert cfg.trainer.metrics == ["ser", "per"]
    assert cfg.trainer.monitor == "ser"
    assert not get_metric("ser").higher_is_better
    # Words have at most 28 letters (plus the tokenizer's word-start piece) and 28 phonemes
    # (plus bos/eos).
    assert cfg.model.max_len >= 30


@pytest.mark.parametrize("experiment", ["g2p_cmudict", "g2p_cmudict_cpu", "g2p_cmudict_small"])
def test_full_recipes_use_the_whole_split(experiment: str, compose_config: Compose) -> None:
    cfg = _config(compose_config, f"experiment={experiment}")
    assert (cfg.data.train_size, cfg.data.validation_size, cfg.data.test_size) == (None,) * 3


def test_the_task_alone_keeps_every_word(compose_config: Compose) -> None:
    """`data.builtin=g2p_cmudict` on the default data group is the whole split too (its sizes
    were the generated tasks' 10,000 / 500 / 500, which capped it silently)."""
    cfg = _config(compose_config, "data.builtin=g2p_cmudict")
    splits = load_raw_splits(cfg.data, seed=cfg.seed)
    words = Counter(split_of(word) for word in pronunciations())
    for role in ("train", "validation", "test"):
        assert len(set(splits[role]["source"])) == words[role]


def test_causal_linear_recipe_differs_only_in_decoder_self_attention(
    compose_config: Compose,
) -> None:
    softmax = OmegaConf.to_container(compose_config("experiment=g2p_cmudict", tiny=False))
    linear = OmegaConf.to_container(
        compose_config("experiment=g2p_cmudict_causal_linear", tiny=False)
    )
    assert isinstance(softmax, dict) and isinstance(linear, dict)
    assert linear["model"]["decoder"]["self_attention"] == "causal_linear"
    linear["model"]["decoder"]["self_attention"] = "softmax"
    assert linear == softmax


def test_data_builtin_lists_every_builtin_choice(compose_config: Compose) -> None:
    with pytest.raises(ValueError) as error:
        check_config(_config(compose_config, "data.builtin=g2p_cmu"))
    for name in ("addition", "copy", "g2p_cmudict", "reverse", "sort"):
        assert name in str(error.value)


def test_data_task_g2p_caps_the_splits_by_the_sizes(compose_config: Compose) -> None:
    cfg = _config(
        compose_config,
        "data.builtin=g2p_cmudict",
        "data.train_size=30",
        "data.validation_size=5",
        "data.test_size=6",
    )
    check_config(cfg)
    raw = load_raw_splits(cfg.data, seed=cfg.seed)
    words = {role: set(raw[role]["source"]) for role in ("train", "validation", "test")}
    assert [len(words[role]) for role in ("train", "validation", "test")] == [30, 5, 6]


def test_tiny_recipe_trains_and_scores_one_prediction_per_word(
    compose_config: Compose, tmp_path: Path
) -> None:
    cfg = compose_config(
        "experiment=g2p_cmudict_tiny",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.progress=log",
        "data.validation_size=20",
        "data.test_size=25",
        tiny=False,
    )
    run = tmp_path / "run"
    train(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "max_steps"
    assert {"ser", "per"} <= set(metrics["test"]) and {"ser", "per"} <= set(
        metrics["final_validation"]
    )
    # 25 test words, some with several pronunciations: one prediction per word.
    assert len((run / "predictions.txt").read_text().splitlines()) == 25
