"""Whole-config checks that run before any data is loaded or anything is built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter

from seq2seq.cli.command_line import typed_keys
from seq2seq.config.data import DataConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.data.cleaning import OVERLONG_CHOICES
from seq2seq.data.datasets_registry import BUILTIN_DATASETS, TASK_CHOICES
from seq2seq.data.loading import ROLES
from seq2seq.evaluation import get_metric
from seq2seq.generation import GenerationSettings
from seq2seq.model.build import validate_model_config
from seq2seq.tokenizer.sentencepiece import MODEL_TYPES
from seq2seq.training.optim import validate_optim_config
from seq2seq.training.schedule import validate_schedule_config
from seq2seq.training.trainer import validate_trainer_config

SEQ2SEQ_KINDS = ("encoder_decoder",)
LOSS_FIGURES = ("loss", "ppl")


def generation_settings(cfg: TrainConfig) -> GenerationSettings:
    """The decoding settings. Outputs can be as long as the longest target training keeps,
    `model.max_len - 1` tokens: the decoder reads bos and those tokens, and eos is the
    prediction after the last of them, never an input."""
    max_len = max(1, cfg.model.max_len - 1)
    if cfg.generation.min_len > max_len:
        raise ValueError(
            f"generation.min_len={cfg.generation.min_len} is longer than any output can be: "
            f"at most model.max_len - 1 = {max_len} tokens; lower generation.min_len"
        )
    return GenerationSettings(**asdict(cfg.generation), max_len=max_len)


def length_limits(cfg: TrainConfig) -> tuple[int, int]:
    """Longest source and target in tokens: the data settings, or what model.max_len allows
    (the decoder input is bos + target)."""
    source, target = cfg.data.max_source_len, cfg.data.max_target_len
    return (
        cfg.model.max_len if source is None else source,
        cfg.model.max_len - 1 if target is None else target,
    )


# What only data.path reads, and what only data.task reads: set beside the other one,
# they would be silently ignored.
PATH_SETTINGS = ("name", "source", "target", *(f"data_files.{role}" for role in ROLES))
TASK_SETTINGS = ("train_size", "validation_size", "test_size", "min_len", "max_len", "num_symbols")


def _check_task_settings(data: DataConfig) -> None:
    """A data.task makes its own splits: the file, column and split-name settings of a
    data.path are errors beside it. A split size is at least 1: a role is skipped with null."""
    default = DataConfig()
    for key in PATH_SETTINGS:
        value = attrgetter(key)(data)
        if value != attrgetter(key)(default):
            raise ValueError(
                f"data.{key}={value!r} is read only with data.path, but "
                f"data.task={data.task!r} is set; remove data.{key}"
            )
    for role in ROLES:
        size = getattr(data, f"{role}_size")
        if size is not None and size < 1:
            skip = "" if role != "test" else f"; to skip the role, set data.splits.{role}=null"
            raise ValueError(
                f"data.{role}_size={size} must be a positive integer, or null for the "
                f"task's default{skip}"
            )
    for role, split in asdict(data.splits).items():
        if split not in (role, None):
            raise ValueError(
                f"data.splits.{role}={split!r}: data.task={data.task!r} makes the splits "
                f"{list(ROLES)}; a role is kept under its own name or skipped with null"
            )


# What only the generators read: a built-in dataset ignores it, and addition's symbols
# are the ten digits.
GENERATOR_SETTINGS = ("min_len", "max_len", "num_symbols")


def _unread_settings(data: DataConfig) -> tuple[tuple[str, ...], str]:
    """The data settings the chosen data does not read, and what reads them instead."""
    if data.path is not None:
        return TASK_SETTINGS, f"with data.task, but data.path={data.path!r} is set"
    if data.task in BUILTIN_DATASETS:
        return GENERATOR_SETTINGS, f"by the generated tasks, but data.task={data.task!r} is set"
    if data.task == "addition":
        return ("num_symbols",), "by the letter tasks; addition's symbols are the ten digits"
    return (), ""


def _check_typed_settings(data: DataConfig, command_line: Sequence[str]) -> None:
    """A data setting typed on the command line that the chosen data does not read would
    be silently ignored. Only the command line is checked: a recipe (experiment=toy_reverse)
    sets task settings that a user switching it to other data never typed and cannot remove."""
    typed = set(typed_keys(command_line))
    unread, readers = _unread_settings(data)
    for key in unread:
        if f"data.{key}" in typed:
            raise ValueError(
                f"data.{key}={attrgetter(key)(data)!r} is read only {readers}; remove data.{key}"
            )


def validate_config(cfg: TrainConfig, *, command_line: Sequence[str] = ()) -> None:
    """Raise one clear ValueError for the first wrong or incompatible setting.
    `command_line`: the overrides the user typed (Hydra's `overrides.task`)."""
    if cfg.model.kind not in SEQ2SEQ_KINDS:
        raise ValueError(
            f"model.kind={cfg.model.kind!r}: seq2seq-train trains {SEQ2SEQ_KINDS} models"
        )
    validate_model_config(cfg.model)
    validate_optim_config(cfg.optim)
    validate_trainer_config(cfg.trainer)
    validate_schedule_config(cfg.schedule, max_steps=cfg.trainer.max_steps)
    generation_settings(cfg)

    if not 0 <= cfg.seed < 2**64:
        raise ValueError(f"seed={cfg.seed} must be an integer in [0, 2**64)")
    data = cfg.data
    if data.num_workers < 0:
        raise ValueError(
            f"data.num_workers={data.num_workers} must be >= 0 (0 loads in the main process)"
        )
    if data.splits.validation is None:
        raise ValueError(
            "data.splits.validation=None: training needs a validation split (set its split "
            "name, and data.data_files.validation for local files)"
        )
    if (data.task is None) == (data.path is None):
        raise ValueError(
            "set exactly one of data.task (a built-in task: "
            f"{list(TASK_CHOICES)}) and data.path (a datasets path such as json, csv, parquet, "
            f"text or a hub name); got data.task={data.task!r}, data.path={data.path!r}"
        )
    if data.task is not None and data.task not in TASK_CHOICES:
        raise ValueError(f"data.task={data.task!r} is unknown; choose one of {list(TASK_CHOICES)}")
    if data.task is not None:
        _check_task_settings(data)
    _check_typed_settings(data, command_line)
    if data.overlong not in OVERLONG_CHOICES:
        raise ValueError(
            f"data.overlong={data.overlong!r} is unknown; choose one of {list(OVERLONG_CHOICES)}"
        )
    max_source, max_target = length_limits(cfg)
    for name, value in {
        "data.max_tokens": data.max_tokens,
        "data.max_source_len": max_source,
        "data.max_target_len": max_target,
    }.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be a positive integer")
    longest = max(max_source, max_target + 1)
    if longest > cfg.model.max_len:
        raise ValueError(
            f"data.max_source_len={max_source} / data.max_target_len={max_target} "
            f"(+1 for bos/eos) exceed model.max_len={cfg.model.max_len}"
        )
    if cfg.tokenizer.model_type not in MODEL_TYPES:
        raise ValueError(
            f"tokenizer.model_type={cfg.tokenizer.model_type!r} is unknown; "
            f"choose one of {list(MODEL_TYPES)}"
        )
    if cfg.tokenizer.vocab_size < 8:
        raise ValueError(f"tokenizer.vocab_size={cfg.tokenizer.vocab_size} must be at least 8")
    if cfg.model.share_embeddings and not cfg.tokenizer.shared:
        raise ValueError("model.share_embeddings=true needs tokenizer.shared=true")

    for name in cfg.trainer.metrics:
        try:
            get_metric(name)
        except ValueError as error:
            raise ValueError(f"trainer.metrics={list(cfg.trainer.metrics)}: {error}") from None
    valid_monitors = [*LOSS_FIGURES, *cfg.trainer.metrics]
    if cfg.trainer.monitor not in valid_monitors:
        raise ValueError(
            f"trainer.monitor={cfg.trainer.monitor!r} is not computed; choose one of "
            f"{valid_monitors} (add a metric to trainer.metrics to monitor it)"
        )
