"""Every named choice fails clearly before any data work. The task, the attention kinds and
the built-in datasets are plain strings checked against their registry (the one list of
each: adding one is a module, a registry entry and a config file); the other choices are
Enums in the schema, which fail at composition naming the key and the valid values, and
each Enum lists exactly the options its registry builds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from seq2seq.config.choice import Choice
from seq2seq.config.data import Overlong, TokenizerModel
from seq2seq.config.generation import Strategy
from seq2seq.config.model import (
    Activation,
    FeatureMap,
    LinearBackend,
    Norm,
    NormPosition,
    Pooling,
    Position,
)
from seq2seq.config.training import NonFinite, Optimizer, Precision, ProgressMode, Schedule
from seq2seq.data.builtin import BUILTIN_DATASETS
from seq2seq.data.cleaning import OVERLONG_CHOICES
from seq2seq.data.tokenization import BYTE
from seq2seq.generation import STRATEGIES
from seq2seq.jobs.checks import checked_config
from seq2seq.model.activations import ACTIVATIONS
from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS
from seq2seq.model.attention.backends import LINEAR_BACKENDS
from seq2seq.model.classifier import POOLINGS
from seq2seq.model.embedding import POSITIONS
from seq2seq.model.norms import NORMS
from seq2seq.tasks import TASKS
from seq2seq.tokenizer.sentencepiece import MODEL_TYPES
from seq2seq.training.optim import OPTIMIZERS
from seq2seq.training.precision import PRECISIONS
from seq2seq.training.progress import PROGRESS_MODES
from seq2seq.training.schedule import SCHEDULES

Compose = Callable[..., DictConfig]

REGISTRIES: list[tuple[type[Choice], object]] = [
    (Norm, NORMS),
    (NormPosition, {position for positions in NORMS.values() for position in positions}),
    (Activation, ACTIVATIONS),
    (Position, POSITIONS),
    (FeatureMap, FEATURE_MAPS),
    (LinearBackend, LINEAR_BACKENDS),
    (Pooling, POOLINGS),
    (Optimizer, OPTIMIZERS),
    (Schedule, SCHEDULES),
    (Precision, PRECISIONS),
    (NonFinite, ("skip", "stop")),
    (ProgressMode, PROGRESS_MODES),
    (Strategy, STRATEGIES),
    (Overlong, OVERLONG_CHOICES),
    (TokenizerModel, {*MODEL_TYPES, BYTE}),
]


@pytest.mark.parametrize(
    ("choice", "registry"), REGISTRIES, ids=lambda c: getattr(c, "__name__", "")
)
def test_each_choice_lists_exactly_what_its_registry_builds(
    choice: type[Choice], registry: object
) -> None:
    assert sorted(choice.names()) == sorted(registry)  # type: ignore[call-overload]
    for member in choice:
        assert member.name == member.value
        assert f"{member}" == member.value == str(member)


@pytest.mark.parametrize(
    ("override", "valid"),
    [
        ("task=seq2seq_lm", None),  # a group: Hydra lists the group's options
        ("model.norm=batchnorm", Norm),
        ("model.norm_position=middle", NormPosition),
        ("model.activation=tanh", Activation),
        ("model.position=alibi", Position),
        ("model.linear.feature_map=cosine", FeatureMap),
        ("model.pooling=cls_token", Pooling),
        ("optim.name=lion", Optimizer),
        ("schedule.name=step", Schedule),
        ("trainer.precision=fp8", Precision),
        ("trainer.nonfinite=ignore", NonFinite),
        ("trainer.progress=rich", ProgressMode),
        ("generation.strategy=nucleus", Strategy),
        ("data.overlong=wrap", Overlong),
        ("tokenizer.model_type=wordpiece", TokenizerModel),
    ],
)
def test_an_unknown_choice_fails_at_composition_naming_the_valid_ones(
    compose_config: Compose, override: str, valid: type[Enum] | None
) -> None:
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config("experiment=toy_reverse", override)
    cause = str(raised.value.__cause__ or raised.value)
    key, value = override.split("=")
    if valid is None:
        assert value in str(raised.value)
        return
    assert f"Invalid value '{value}'" in cause
    assert f"full_key: {key}" in cause
    assert f"[{', '.join(member.value for member in valid)}]" in cause


def test_the_command_line_names_key_value_and_choices_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq.cli.train", "experiment=toy_reverse", "model.norm=batch"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seq2seq-train: error: ")
    assert "model.norm=batch" in lines[0]
    assert "[layernorm, rmsnorm, rezero, prescalenorm]" in lines[0]
    assert not any(tmp_path.iterdir()), "a refused command leaves nothing behind"


@pytest.mark.parametrize(
    ("override", "field", "registry"),
    [
        ("task=seq2seq_lm", "task", TASKS),
        ("model.encoder.self_attention=performer", "model.encoder.self_attention", ATTENTIONS),
        ("model.decoder.self_attention=flash", "model.decoder.self_attention", ATTENTIONS),
        ("model.decoder.cross_attention=Softmax", "model.decoder.cross_attention", ATTENTIONS),
        (
            "model.decoder.self_attention=causal_linear+flash",
            "model.decoder.self_attention",
            ATTENTIONS,
        ),
        ("data.builtin=g2p_cmu", "data.builtin", BUILTIN_DATASETS),
    ],
)
def test_a_registry_choice_fails_before_data_work_naming_the_field_and_the_registry(
    compose_config: Compose, override: str, field: str, registry: dict[str, object]
) -> None:
    """`task=` is also a config group: composing a plain `task` value works, the check
    refuses it."""
    key, value = override.split("=")
    if key == "task":
        node = compose_config("experiment=toy_reverse")
        node.task = value
    else:
        node = compose_config("experiment=toy_reverse", override)
    with pytest.raises(ValueError) as raised:
        checked_config(node)
    message = str(raised.value)
    assert field in message
    assert repr(value.rsplit("+", 1)[-1]) in message
    assert str(sorted(registry)) in message


def test_the_old_name_of_a_renamed_key_is_refused_naming_the_new_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq.cli.train", "data.task=reverse"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "seq2seq-train: error: data.task was renamed data.builtin; "
        "write data.builtin=<value> instead"
    )
    assert not any(tmp_path.iterdir())
