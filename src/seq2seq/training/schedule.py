"""Learning-rate schedules: a linear warmup, then inverse-sqrt, cosine, linear or constant.

Each is a multiplier of `optim.lr` as a function of the optimizer step, wrapped in a
`LambdaLR` so its state is checkpointed with the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from seq2seq.config.training import ScheduleConfig

Decay = Callable[[int, int, int, float], float]
"""`(step, warmup, max_steps, min_ratio) -> multiplier` for steps after warmup."""


def _inverse_sqrt(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    return math.sqrt(max(warmup, 1) / step)


def _decay_progress(step: int, warmup: int, max_steps: int) -> float:
    """0 at the first step after warmup, `1 - 1 / (max_steps - warmup)` at the last one:
    the decay reaches `min_lr_ratio` just after training ends, so the last step still
    updates (with warmup 0, step 1 uses the peak)."""
    return min(1.0, (step - warmup - 1) / max(1, max_steps - warmup))


def _cosine(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    progress = _decay_progress(step, warmup, max_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    progress = _decay_progress(step, warmup, max_steps)
    return min_ratio + (1.0 - min_ratio) * (1.0 - progress)


def _constant(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    return 1.0


SCHEDULES: dict[str, Decay] = {
    "inverse_sqrt": _inverse_sqrt,
    "cosine": _cosine,
    "linear": _linear,
    "constant": _constant,
}
DECAYING = ("cosine", "linear")
"""The schedules that decay to `min_lr_ratio` by the last step."""


def validate_schedule_config(cfg: ScheduleConfig, *, max_steps: int) -> None:
    if cfg.name not in SCHEDULES:
        raise ValueError(
            f"schedule.name={cfg.name!r} is unknown; choose one of {sorted(SCHEDULES)}"
        )
    if cfg.warmup_steps < 0:
        raise ValueError(f"schedule.warmup_steps={cfg.warmup_steps} must be >= 0")
    if cfg.name in DECAYING and cfg.warmup_steps >= max_steps:
        raise ValueError(
            f"schedule.warmup_steps={cfg.warmup_steps} must be below trainer.max_steps={max_steps} "
            f"for schedule.name={cfg.name!r}, which decays over the steps after warmup"
        )
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio={cfg.min_lr_ratio} must be in [0, 1]")
    if cfg.name not in DECAYING and cfg.min_lr_ratio != ScheduleConfig().min_lr_ratio:
        raise ValueError(
            f"schedule.min_lr_ratio={cfg.min_lr_ratio} is read only by the schedules that "
            f"decay to it, {list(DECAYING)}, but schedule.name={cfg.name!r}; "
            "remove schedule.min_lr_ratio"
        )


def lr_multiplier(step: int, cfg: ScheduleConfig, *, max_steps: int) -> float:
    """The multiplier of `optim.lr` used for optimizer step `step` (counted from 1)."""
    if step <= cfg.warmup_steps:
        return step / max(1, cfg.warmup_steps)
    return SCHEDULES[cfg.name](step, cfg.warmup_steps, max_steps, cfg.min_lr_ratio)


def sync_learning_rates(scheduler: LRScheduler) -> None:
    """After a scheduler's state is loaded: give the optimizer the rates of the schedule
    as configured now, not the ones saved with it, so that a run resumed with another
    `trainer.max_steps` takes even its first step on the new schedule. With the same
    settings this recomputes the saved rates exactly (LambdaLR's own formula)."""
    if isinstance(scheduler, LambdaLR):
        rates = [
            base * schedule(scheduler.last_epoch)
            for base, schedule in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        ]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate


def build_scheduler(optimizer: Optimizer, cfg: ScheduleConfig, *, max_steps: int) -> LambdaLR:
    validate_schedule_config(cfg, max_steps=max_steps)
    # LambdaLR evaluates at 0 for the first step; shift by one so step 1 has lr > 0.
    return LambdaLR(optimizer, lambda index: lr_multiplier(index + 1, cfg, max_steps=max_steps))
