"""The checks of single settings and of settings within one config node (optimizer,
schedule, trainer, tokenizer), which need nothing but the schema. Each raises one ValueError
naming the field, the value and what is valid. The checks that need a registry live beside
it (`seq2seq.model.checks`, `seq2seq.data.checks`); `seq2seq.jobs.checks` runs them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from operator import attrgetter

import torch

from seq2seq.config.command_line import typed_keys
from seq2seq.config.data import TokenizerConfig
from seq2seq.config.model import ModelConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import (
    OptimConfig,
    Optimizer,
    ParallelStrategy,
    Precision,
    Schedule,
    ScheduleConfig,
    TrainerConfig,
)

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
"""The values a device setting takes."""


def check_device_name(name: str, *, field: str) -> None:
    """Refuse a device name that is none of `DEVICE_PATTERN`'s (mps, xla, a typo)."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(
            f"{field}={name!r} is not a supported device; use auto, cpu, cuda or cuda:N"
        )


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


def check_schedule(cfg: ScheduleConfig, command_line: Sequence[str] = ()) -> None:
    """`schedule.min_lr_ratio` typed beside a schedule that does not decay would be
    ignored: refused. A recipe's own value is not (a user switching schedules never typed
    it, and cannot remove it)."""
    if cfg.warmup_steps < 0:
        raise ValueError(f"schedule.warmup_steps={cfg.warmup_steps} must be >= 0")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio={cfg.min_lr_ratio} must be in [0, 1]")
    if cfg.name not in DECAYING and "schedule.min_lr_ratio" in typed_keys(command_line):
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
        "trainer.ema_start": (cfg.ema_start, 0),
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
    check_ema(cfg)
    check_strategy(cfg)


def check_ema(cfg: TrainerConfig) -> None:
    if cfg.ema_decay is not None:
        if not 0.0 < cfg.ema_decay < 1.0:  # NaN fails too
            raise ValueError(
                f"trainer.ema_decay={cfg.ema_decay} must be in (0, 1), e.g. 0.999, or null for "
                "no EMA of the weights"
            )
        return
    default = TrainerConfig()
    for name in ("ema_start", "ema_eval"):
        value = getattr(cfg, name)
        if value != getattr(default, name):
            raise ValueError(
                f"trainer.{name}={value} is read only with an EMA of the weights, but "
                f"trainer.ema_decay=None; set trainer.ema_decay (e.g. 0.999) or remove "
                f"trainer.{name}"
            )


def check_strategy(cfg: TrainerConfig) -> None:
    """What `trainer.strategy=fsdp` does not support: an EMA (its copy of the weights would
    be a whole unsharded model on every rank), torch.compile and fp16's GradScaler (neither
    is wired through the sharded parameters here)."""
    if cfg.strategy != ParallelStrategy.fsdp:
        return
    unsupported = {
        "trainer.ema_decay": (cfg.ema_decay is not None, cfg.ema_decay, "null"),
        "trainer.compile": (cfg.compile, cfg.compile, "false"),
        "trainer.precision": (cfg.precision == Precision.fp16, cfg.precision, "'bf16' or 'fp32'"),
    }
    for name, (refused, value, use) in unsupported.items():
        if refused:
            raise ValueError(
                f"{name}={value!r} is not supported with trainer.strategy='fsdp'; set {name}="
                f"{use}, or use trainer.strategy='ddp'"
            )


def check_precision(
    precision: Precision, device: torch.device, *, field: str = "trainer.precision"
) -> None:
    """fp16 autocast (with its GradScaler) runs on CUDA only; checked once the device is known."""
    if precision == Precision.fp16 and device.type != "cuda":
        raise ValueError(
            f"{field}='fp16' needs a CUDA device, but the device is {device}; "
            "use 'bf16' or 'fp32' on the CPU"
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
