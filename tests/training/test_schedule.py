"""Learning-rate schedules: the rate each optimizer step uses, counted from step 1."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from seq2seq.config.training import ScheduleConfig
from seq2seq.training.schedule import (
    SCHEDULES,
    build_scheduler,
    lr_multiplier,
    sync_learning_rates,
)

MAX_STEPS = 20


def _rates(cfg: ScheduleConfig, *, max_steps: int = MAX_STEPS) -> list[float]:
    """The multiplier each step 1..max_steps uses, read from a real optimizer."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, max_steps=max_steps)
    rates = []
    for _ in range(max_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_warmup_rises_to_the_peak_and_every_step_updates(name: str, warmup: int) -> None:
    cfg = ScheduleConfig(name=name, warmup_steps=warmup, min_lr_ratio=0.0)
    rates = _rates(cfg)
    assert rates == pytest.approx(
        [lr_multiplier(s, cfg, max_steps=MAX_STEPS) for s in range(1, 21)]
    )
    assert all(rate > 0 for rate in rates), rates
    assert rates[: max(warmup, 1)] == pytest.approx(
        [s / warmup for s in range(1, warmup + 1)] if warmup else [1.0]
    )
    # After warmup the rate never rises.
    after = rates[max(warmup, 1) - 1 :]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after)), after


@pytest.mark.parametrize("name", ["cosine", "linear"])
@pytest.mark.parametrize("min_ratio", [0.0, 0.1])
def test_decay_reaches_its_floor_just_after_the_last_step(name: str, min_ratio: float) -> None:
    warmup = 4
    cfg = ScheduleConfig(name=name, warmup_steps=warmup, min_lr_ratio=min_ratio)
    rates = _rates(cfg)
    # The first step after warmup still uses the peak; the last is one decay step above
    # the floor, and the floor is what a step past max_steps would use.
    assert rates[warmup] == pytest.approx(1.0)
    last_progress = (MAX_STEPS - warmup - 1) / (MAX_STEPS - warmup)
    shape = 0.5 * (1 + math.cos(math.pi * last_progress)) if name == "cosine" else 1 - last_progress
    assert rates[-1] == pytest.approx(min_ratio + (1 - min_ratio) * shape)
    assert rates[-1] > min_ratio
    assert lr_multiplier(MAX_STEPS + 1, cfg, max_steps=MAX_STEPS) == pytest.approx(min_ratio)


def test_inverse_sqrt_halves_at_four_times_warmup() -> None:
    cfg = ScheduleConfig(name="inverse_sqrt", warmup_steps=5)
    assert lr_multiplier(5, cfg, max_steps=MAX_STEPS) == pytest.approx(1.0)
    assert lr_multiplier(20, cfg, max_steps=MAX_STEPS) == pytest.approx(0.5)


@pytest.mark.parametrize("new_max_steps", [MAX_STEPS, 2 * MAX_STEPS])
def test_a_resumed_schedule_takes_its_first_step_on_the_new_settings(new_max_steps: int) -> None:
    """A run resumed with another trainer.max_steps: the optimizer's saved rate was
    computed for the old length; the next step must use the new one (and, with the same
    length, exactly the saved one)."""
    cfg = ScheduleConfig(name="cosine", warmup_steps=2)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, max_steps=MAX_STEPS)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    saved_rate = optimizer.param_groups[0]["lr"]
    saved = (optimizer.state_dict(), scheduler.state_dict())

    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = build_scheduler(resumed_optimizer, cfg, max_steps=new_max_steps)
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    sync_learning_rates(resumed)
    rate = resumed_optimizer.param_groups[0]["lr"]
    assert rate == lr_multiplier(11, cfg, max_steps=new_max_steps)
    if new_max_steps == MAX_STEPS:
        assert rate == saved_rate  # bit for bit: resume equals an unbroken run
