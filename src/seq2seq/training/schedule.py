"""Learning-rate schedules: a linear warmup, then inverse-sqrt, cosine, linear or constant.

Each is a multiplier of `optim.lr` as a function of the optimizer step, wrapped in a
`LambdaLR` so its state is checkpointed with the rest. The settings are checked by
`seq2seq.config.checks.check_schedule`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from seq2seq.config.training import ScheduleConfig

log = logging.getLogger("seq2seq.train")

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


def lr_multiplier(step: int, cfg: ScheduleConfig, *, max_steps: int) -> float:
    """The multiplier of `optim.lr` used for optimizer step `step` (counted from 1). A
    warmup as long as the run or longer warms up for the whole run at its own slope, as
    fairseq's and Hugging Face's schedules do: the rate never reaches `optim.lr`."""
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
    if cfg.warmup_steps >= max_steps:
        log.warning(
            "schedule.warmup_steps=%d is not below trainer.max_steps=%d: the learning rate "
            "warms up for the whole run and ends at %.3g of optim.lr, without the %s decay",
            cfg.warmup_steps,
            max_steps,
            max_steps / max(1, cfg.warmup_steps),
            cfg.name,
        )
    # LambdaLR evaluates at 0 for the first step; shift by one so step 1 has lr > 0.
    return LambdaLR(optimizer, lambda index: lr_multiplier(index + 1, cfg, max_steps=max_steps))
