"""Every check of a whole train config, in one place, before any data is loaded.

Hydra's composition already refuses a misspelt key, a wrong type and an unknown choice (the
choices are Enums). What is left is here: values out of range and settings that contradict
each other or that the chosen option would silently ignore. Each check is written once and
raises one ValueError naming the field, the value and what is valid. The task adds its own
checks (`Task.check_config`); components may still assert their own invariants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter

import torch

from seq2seq.config.command_line import typed_keys
from seq2seq.config.data import BuiltinData, DataConfig, TokenizerConfig
from seq2seq.config.model import (
    AttentionKind,
    FeatureMap,
    LinearBackend,
    ModelConfig,
    NormPosition,
    Position,
)
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import (
    OptimConfig,
    Optimizer,
    Precision,
    Schedule,
    ScheduleConfig,
    TrainerConfig,
)
from seq2seq.data.datasets_registry import BUILTIN_DATASETS, builtin_fields
from seq2seq.data.loading import ROLES
from seq2seq.data.tasks import TASKS
from seq2seq.evaluation import get_metric
from seq2seq.model.attention.backends import check_backend
from seq2seq.model.attention.registry import ATTENTIONS
from seq2seq.model.build import ModelKind, attention_fields, linear_settings, uses_linear_attention
from seq2seq.model.norms import NORMS
from seq2seq.training.devices import check_device_name


def check_config(cfg: TrainConfig, *, command_line: Sequence[str] = ()) -> None:
    """Raise one clear ValueError for the first wrong or incompatible setting of `cfg`.
    `command_line`: the overrides the user typed (for the checks only they can fail)."""
    from seq2seq.tasks import task_class  # the tasks build on the config layer

    task = task_class(cfg.task)
    if not 0 <= cfg.seed < 2**64:
        raise ValueError(f"seed={cfg.seed} must be an integer in [0, 2**64)")
    check_model(cfg.model, kind=task.model_kind)
    check_optim(cfg.optim)
    check_schedule(cfg.schedule)
    check_trainer(cfg.trainer)
    check_data_source(cfg.data, command_line)
    check_tokenizer(cfg.tokenizer, cfg.model)
    task.check_config(cfg, command_line)
    check_metrics(cfg.trainer)
    check_monitor(cfg.trainer, list(task.figures(cfg)))


# --- model --------------------------------------------------------------------------------


def _choices_text(fields: dict[str, AttentionKind]) -> str:
    """`model.encoder.self_attention='softmax', ...`: the stacks' choices, for errors."""
    return ", ".join(f"{field}={choice!r}" for field, choice in fields.items())


POST_NORMS = tuple(name for name, positions in NORMS.items() if NormPosition.post in positions)
"""The residual schemes that have a post-norm form."""

FAVOR_ONLY = ("nb_features", "redraw_interval")
"""Linear-attention settings that only random features (FAVOR+) read."""


def check_model(cfg: ModelConfig, *, kind: ModelKind) -> None:
    """The model settings of a model of `kind` (the task's)."""
    for name, value in {
        "model.d_model": cfg.d_model,
        "model.heads": cfg.heads,
        "model.d_ff": cfg.d_ff,
        "model.max_len": cfg.max_len,
    }.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be a positive integer")
    if cfg.d_model % cfg.heads:
        raise ValueError(
            f"model.d_model={cfg.d_model} is not divisible by model.heads={cfg.heads}; "
            f"choose heads among {[h for h in range(1, cfg.d_model + 1) if cfg.d_model % h == 0]}"
        )
    built = attention_fields(cfg, kind)
    for stack, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        if f"model.{stack}.self_attention" in built and layers < 1:
            raise ValueError(f"model.{stack}.layers={layers} must be at least 1")
    for name, p in {
        "model.dropout": cfg.dropout,
        "model.attention_dropout": cfg.attention_dropout,
    }.items():
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name}={p} must be in [0, 1)")
    if cfg.norm_position == NormPosition.post and cfg.norm not in POST_NORMS:
        raise ValueError(
            f"model.norm_position='post' is not available with model.norm={cfg.norm!r}; "
            f"choose 'pre' (post-norm exists for {' and '.join(POST_NORMS)} only)"
        )
    for field_name, choice in built.items():
        kind_class = ATTENTIONS[choice]
        causal = field_name == "model.decoder.self_attention"
        if causal and not kind_class.supports_causal:
            valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_causal)
            raise ValueError(
                f"{field_name}={choice!r} is not causal and cannot be decoder self-attention; "
                f"choose one of {valid}"
            )
        if not causal and not kind_class.supports_bidirectional:
            valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_bidirectional)
            raise ValueError(
                f"{field_name}={choice!r} is causal-only and cannot attend in both directions; "
                f"choose one of {valid}"
            )
    _check_linear(cfg, kind, built)
    _check_rotary(cfg, built)
    if cfg.attention_dropout > 0 and AttentionKind.softmax not in built.values():
        raise ValueError(
            f"model.attention_dropout={cfg.attention_dropout} is read only by softmax "
            f"attention, which no stack uses ({_choices_text(built)}); remove it"
        )
    if cfg.share_embeddings and kind != "encoder_decoder":
        raise ValueError(
            f"model.share_embeddings=true ties source and target embeddings, but this task's "
            f"model ({kind}) has one embedding; remove it"
        )


def _check_linear(cfg: ModelConfig, kind: ModelKind, built: dict[str, AttentionKind]) -> None:
    explicit = {
        f"model.linear.{name}": value
        for name, value in vars(cfg.linear).items()
        if value is not None
    }
    if not uses_linear_attention(cfg, kind):
        if explicit:
            setting, value = next(iter(explicit.items()))
            raise ValueError(
                f"{setting}={value!r} is set, but no stack uses a linear attention "
                f"({_choices_text(built)}); "
                "remove it, or choose 'linear' / 'causal_linear' for a stack"
            )
        return
    settings = linear_settings(cfg)
    if settings.feature_map != FeatureMap.favor:
        for name in FAVOR_ONLY:
            if f"model.linear.{name}" in explicit:
                raise ValueError(
                    f"model.linear.{name}={explicit[f'model.linear.{name}']!r} is read only by "
                    f"model.linear.feature_map='favor', but it is {settings.feature_map!r}; "
                    "remove it"
                )
    check_backend(settings.backend)
    for name, value, least in (
        ("nb_features", settings.nb_features, 1),
        ("chunk_size", settings.chunk_size, 1),
        ("redraw_interval", settings.redraw_interval, 0),
    ):
        if value < least:
            raise ValueError(f"model.linear.{name}={value} must be >= {least}")


def _check_rotary(cfg: ModelConfig, built: dict[str, AttentionKind]) -> None:
    """Rotary positions turn pairs of columns: of q and k (width Dh) for softmax, of the
    features (width m: Dh for elu and relu) for the linear kinds, which the Triton kernels
    cannot do. Cross-attention is never turned, so only self-attention choices count."""
    if cfg.position != Position.rotary:
        return
    head_dim = cfg.d_model // cfg.heads
    if head_dim % 2:
        even = [
            h
            for h in range(1, cfg.d_model + 1)
            if cfg.d_model % h == 0 and (cfg.d_model // h) % 2 == 0
        ]
        raise ValueError(
            f"model.position='rotary' turns the head width in pairs, but model.d_model="
            f"{cfg.d_model} / model.heads={cfg.heads} = {head_dim} is odd; choose heads among "
            f"{even}, or another model.position"
        )
    rotated = [
        field
        for field, choice in built.items()
        if field.endswith(".self_attention") and ATTENTIONS[choice].uses_feature_map
    ]
    if not rotated:
        return
    settings = linear_settings(cfg)
    if settings.feature_map == FeatureMap.favor and settings.nb_features % 2:
        n = settings.nb_features
        valid = f"{n - 1} or {n + 1}" if n > 1 else f"{n + 1}"
        raise ValueError(
            f"model.linear.nb_features={n} is odd, but model.position='rotary' turns the "
            f"features of {rotated[0]} in pairs; choose {valid}"
        )
    if settings.backend == LinearBackend.triton:
        raise ValueError(
            "model.linear.backend='triton' has no rotary form, but model.position='rotary' "
            f"turns the features of {rotated[0]}; choose 'auto' (the torch backend then runs "
            "the rotary layers) or 'torch', or another model.position"
        )


# --- optimizer, schedule, trainer -------------------------------------------------------


def check_optim(cfg: OptimConfig) -> None:
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"optim.lr={cfg.lr} must be positive and finite")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise ValueError(f"optim.weight_decay={cfg.weight_decay} must be >= 0 and finite")
    if not (math.isfinite(cfg.eps) and cfg.eps > 0):
        raise ValueError(f"optim.eps={cfg.eps} must be positive and finite")
    if not 0.0 <= cfg.momentum < 1.0:
        raise ValueError(f"optim.momentum={cfg.momentum} must be in [0, 1)")
    default = OptimConfig()
    if cfg.name == Optimizer.sgd:
        if list(cfg.betas) != default.betas:
            raise ValueError(
                f"optim.betas={list(cfg.betas)} is read only by adam and adamw, but "
                "optim.name='sgd'; remove optim.betas"
            )
        return
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"optim.betas={list(cfg.betas)} must be two numbers in [0, 1)")
    if cfg.momentum != default.momentum:
        raise ValueError(
            f"optim.momentum={cfg.momentum} is read only by sgd, but optim.name={cfg.name!r} "
            "(Adam's momentum is optim.betas[0]); remove optim.momentum"
        )


DECAYING = (Schedule.cosine, Schedule.linear)
"""The schedules that decay to `schedule.min_lr_ratio` by the last step."""


def check_schedule(cfg: ScheduleConfig) -> None:
    if cfg.warmup_steps < 0:
        raise ValueError(f"schedule.warmup_steps={cfg.warmup_steps} must be >= 0")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio={cfg.min_lr_ratio} must be in [0, 1]")
    if cfg.name not in DECAYING and cfg.min_lr_ratio != ScheduleConfig().min_lr_ratio:
        raise ValueError(
            f"schedule.min_lr_ratio={cfg.min_lr_ratio} is read only by the schedules that "
            f"decay to it, {[str(name) for name in DECAYING]}, but schedule.name={cfg.name!r}; "
            "remove schedule.min_lr_ratio"
        )


def check_trainer(cfg: TrainerConfig) -> None:
    checks = {
        "trainer.max_steps": (cfg.max_steps, 1),
        "trainer.grad_accum": (cfg.grad_accum, 1),
        "trainer.eval_every": (cfg.eval_every, 1),
        "trainer.log_every": (cfg.log_every, 1),
        "trainer.keep_last": (cfg.keep_last, 1),
        "trainer.patience": (cfg.patience, 0),
        "trainer.num_samples": (cfg.num_samples, 0),
        "trainer.max_skipped_steps": (cfg.max_skipped_steps, 0),
    }
    for name, (value, minimum) in checks.items():
        if value < minimum:
            raise ValueError(f"{name}={value} must be >= {minimum}")
    if cfg.threads != "auto" and not (cfg.threads.isdigit() and int(cfg.threads) >= 1):
        raise ValueError(
            f"trainer.threads={cfg.threads!r} must be auto or a positive number of threads"
        )
    if cfg.max_epochs is not None and cfg.max_epochs < 1:
        raise ValueError(f"trainer.max_epochs={cfg.max_epochs} must be >= 1 or null")
    if cfg.max_time is not None and not (math.isfinite(cfg.max_time) and cfg.max_time > 0):
        raise ValueError(
            f"trainer.max_time={cfg.max_time} must be a positive number of minutes or null"
        )
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ValueError(f"trainer.label_smoothing={cfg.label_smoothing} must be in [0, 1)")
    if not (math.isfinite(cfg.clip_norm) and cfg.clip_norm >= 0):
        raise ValueError(f"trainer.clip_norm={cfg.clip_norm} must be >= 0 and finite (0 disables)")
    check_device_name(cfg.device, field="trainer.device")


def check_precision(
    precision: Precision, device: torch.device, *, field: str = "trainer.precision"
) -> None:
    """fp16 autocast (with its GradScaler) runs on CUDA only; checked once the device is known."""
    if precision == Precision.fp16 and device.type != "cuda":
        raise ValueError(
            f"{field}='fp16' needs a CUDA device, but the device is {device}; "
            "use 'bf16' or 'fp32' on the CPU"
        )


def check_metrics(cfg: TrainerConfig) -> None:
    """`trainer.metrics` are registered metrics."""
    for name in cfg.metrics:
        try:
            get_metric(name)
        except ValueError as error:
            raise ValueError(f"trainer.metrics={list(cfg.metrics)}: {error}") from None


def check_monitor(cfg: TrainerConfig, figures: Sequence[str]) -> None:
    """`trainer.monitor` is one of `figures` (what the task's validation computes)."""
    if cfg.monitor not in figures:
        raise ValueError(
            f"trainer.monitor={cfg.monitor!r} is not computed; choose one of "
            f"{list(figures)} (add a metric to trainer.metrics to monitor it)"
        )


# --- data and tokenizer ------------------------------------------------------------------

# What only data.path reads, and what only data.task reads: set beside the other one,
# they would be silently ignored.
PATH_SETTINGS = (
    "name",
    "source",
    "target",
    "text",
    "text_pair",
    "label",
    *(f"data_files.{role}" for role in ROLES),
)
TASK_SETTINGS = ("train_size", "validation_size", "test_size", "min_len", "max_len", "num_symbols")
# What only the generators read: a built-in dataset ignores it, and addition's symbols
# are the ten digits.
GENERATOR_SETTINGS = ("min_len", "max_len", "num_symbols")


def check_data_source(data: DataConfig, command_line: Sequence[str]) -> None:
    """Where the data comes from: exactly one of data.task and data.path, the settings each
    reads, the splits, and the loader."""
    if data.num_workers < 0:
        raise ValueError(
            f"data.num_workers={data.num_workers} must be >= 0 (0 loads in the main process)"
        )
    if data.max_tokens < 1:
        raise ValueError(f"data.max_tokens={data.max_tokens} must be a positive integer")
    if data.splits.validation is None:
        raise ValueError(
            "data.splits.validation=None: training needs a validation split (set its split "
            "name, and data.data_files.validation for local files)"
        )
    if (data.task is None) == (data.path is None):
        raise ValueError(
            "set exactly one of data.task (a built-in task: "
            f"{BuiltinData.names()}) and data.path (a datasets path such as json, csv, parquet, "
            f"text or a hub name); got data.task={data.task!r}, data.path={data.path!r}"
        )
    if data.task is not None:
        _check_task_settings(data)
    _check_typed_settings(data, command_line)


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
    reads = BUILTIN_DATASETS[str(data.task)].reads if data.task in BUILTIN_DATASETS else ()
    if data.task not in BUILTIN_DATASETS or "max_len" in reads:  # min_len and max_len
        if data.min_len < 1:
            raise ValueError(f"data.min_len={data.min_len} must be at least 1")
        if data.max_len < data.min_len:
            raise ValueError(
                f"data.max_len={data.max_len} must be at least data.min_len={data.min_len}"
            )
        reads_symbols = data.task in TASKS and TASKS[str(data.task)].reads_symbols
        if reads_symbols and not 1 <= data.num_symbols <= 26:
            raise ValueError(
                f"data.num_symbols={data.num_symbols} must be in 1..26 (lowercase letters)"
            )


def _unread_settings(data: DataConfig) -> tuple[tuple[str, ...], str]:
    """The data settings the chosen data does not read, and what reads them instead."""
    if data.path is not None:
        return TASK_SETTINGS, f"with data.task, but data.path={data.path!r} is set"
    if data.task in BUILTIN_DATASETS:
        reads = BUILTIN_DATASETS[str(data.task)].reads
        unread = tuple(key for key in GENERATOR_SETTINGS if key not in reads)
        return unread, f"by the generated tasks, but data.task={data.task!r} is set"
    if data.task in TASKS and not TASKS[str(data.task)].reads_symbols:
        return ("num_symbols",), f"by the letter tasks; data.task={data.task!r} has its own symbols"
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


def check_builtin_fits(cfg: TrainConfig, fields: Sequence[str], *, task: str) -> None:
    """A built-in `data.task` makes the columns of one kind of training: it must be the
    run's task's (`fields`)."""
    if cfg.data.task is None:
        return
    made = builtin_fields(str(cfg.data.task))
    if set(made) != set(fields):
        fitting = sorted(
            name for name in BuiltinData.names() if set(builtin_fields(name)) == set(fields)
        )
        raise ValueError(
            f"data.task={cfg.data.task!r} makes {list(made)} columns, for another task than "
            f"task={task}; choose one of {fitting}, or set data.path"
        )


def check_unread_typed(
    cfg: TrainConfig, command_line: Sequence[str], keys: Sequence[str], *, reader: str
) -> None:
    """A setting (or group) of `keys` typed on the command line that `reader` (the task)
    does not read would be silently ignored: refuse it. A recipe's own values are not
    checked: a user switching tasks never typed them and cannot remove them."""
    typed = typed_keys(command_line)
    for key in keys:
        if key in typed:
            raise ValueError(
                f"{key}={attrgetter(key)(cfg)!r} is not read by {reader}; remove {key}"
            )


def check_tokenizer(cfg: TokenizerConfig, model: ModelConfig) -> None:
    if cfg.vocab_size < 8:
        raise ValueError(f"tokenizer.vocab_size={cfg.vocab_size} must be at least 8")
    if not 0.0 < cfg.character_coverage <= 1.0:
        raise ValueError(f"tokenizer.character_coverage={cfg.character_coverage} must be in (0, 1]")
    if cfg.source_model_type is not None and cfg.shared:
        raise ValueError(
            f"tokenizer.source_model_type={cfg.source_model_type!r} gives the source its own "
            "tokenizer, but tokenizer.shared=true; set tokenizer.shared=false"
        )
    if model.share_embeddings and not cfg.shared:
        raise ValueError("model.share_embeddings=true needs tokenizer.shared=true")
