"""Every experiment composes and trains a step or two; typos and wrong types name the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from seq2seq.config.schema import TrainConfig
from seq2seq.config.store import builtin_options
from seq2seq.jobs.train import train

Compose = Callable[..., DictConfig]

EXPERIMENTS = builtin_options("experiment")


SMALLER = {
    # The long-context language models at a short block and a few files of their corpus.
    "lm_stdlib_cpu": ("data.block_size=64", "data.validation_size=1", "data.test_size=1"),
    "lm_stdlib": (
        "data.block_size=64",
        "data.validation_size=1",
        "data.test_size=1",
        "model.decoder.layers=2",
    ),
}
"""What makes a recipe too big for a two-step test smaller; everything else is its own."""


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_trains(
    experiment: str, compose_config: Compose, tmp_path: Path
) -> None:
    cfg = compose_config(
        f"experiment={experiment}",
        "trainer.max_steps=2",
        "trainer.eval_every=2",
        *SMALLER.get(experiment, ()),
    )
    OmegaConf.to_object(cfg)
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_readme_examples_compose(compose_config: Compose) -> None:
    cfg = compose_config(
        "experiment=toy_reverse",
        "model.encoder.layers=4",
        "model.decoder.self_attention=causal_linear",
        "norm=rezero",
        "activation=swiglu",
        tiny=False,
    )
    assert cfg.model.encoder.layers == 4
    assert cfg.model.decoder.self_attention == "causal_linear"
    assert (cfg.model.norm, cfg.model.activation) == ("rezero", "swiglu")
    cfg = compose_config(
        "data.path=json",
        "data.data_files.train=my/train.jsonl",
        "data.data_files.validation=my/valid.jsonl",
        "data.source=src",
        "data.target=tgt",
        tiny=False,
    )
    assert cfg.data.path == "json" and cfg.data.data_files.train == "my/train.jsonl"
    assert isinstance(OmegaConf.to_object(cfg), TrainConfig)


def test_misspelt_key_names_the_key(compose_config: Compose) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("model.encoder.layer=4")
    cause = error.value.__cause__
    assert isinstance(cause, (ConfigAttributeError, ConfigKeyError))
    assert "full_key: model.encoder.layer" in str(cause)


def test_wrong_type_names_the_key(compose_config: Compose) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("model.d_model=wide")
    cause = error.value.__cause__
    assert isinstance(cause, ValidationError)
    assert "d_model" in str(cause) and "wide" in str(cause)


def test_unknown_group_choice_lists_the_options(compose_config: Compose) -> None:
    with pytest.raises(MissingConfigException) as error:
        compose_config("norm=batchnorm")
    message = str(error.value)
    assert "norm/batchnorm" in message
    for option in ("layernorm", "rezero", "prescalenorm"):
        assert option in message


@pytest.mark.parametrize("attention", builtin_options("attention"))
@pytest.mark.parametrize("recipe", ["toy_reverse", "lm_dyck"])
def test_every_attention_preset_trains_in_each_model_kind(
    attention: str, recipe: str, compose_config: Compose, tmp_path: Path
) -> None:
    """Each `attention=` preset (hybrid schedules and gated kinds included) composes from
    the command line, passes the checks and trains a step in an encoder-decoder and a
    decoder-only model."""
    cfg = compose_config(
        f"experiment={recipe}",
        f"attention={attention}",
        "model.decoder.layers=4",
        "trainer.max_steps=1",
        "trainer.eval_every=1",
        "data.train_size=16",
        "data.validation_size=4",
        "data.test_size=4",
        *(("data.block_size=16", "trainer.sampled_documents=2") if recipe == "lm_dyck" else ()),
    )
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file()
