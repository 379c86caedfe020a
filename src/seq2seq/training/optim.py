"""Optimizer registry. Biases, norm gains and other 0-/1-d parameters get no weight decay.

The settings are checked by `seq2seq.config.checks.check_optim`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from seq2seq.config.training import OptimConfig

OptimizerFactory = Callable[[list[dict], OptimConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "adamw": lambda groups, cfg: torch.optim.AdamW(
        groups, lr=cfg.lr, betas=_betas(cfg), eps=cfg.eps
    ),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr, betas=_betas(cfg), eps=cfg.eps),
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum),
}


def _betas(cfg: OptimConfig) -> tuple[float, float]:
    return (cfg.betas[0], cfg.betas[1])


def parameter_groups(
    parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for _, parameter in parameters:
        if not parameter.requires_grad or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.name](parameter_groups(model.named_parameters(), cfg.weight_decay), cfg)
