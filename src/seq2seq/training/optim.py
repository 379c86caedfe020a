"""Optimizer registry. Biases, norm gains and other 0-/1-d parameters get no weight decay."""

from __future__ import annotations

import math
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
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ValueError(f"optim.betas={list(cfg.betas)} must be two numbers in [0, 1)")
    return (cfg.betas[0], cfg.betas[1])


def validate_optim_config(cfg: OptimConfig) -> None:
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={cfg.name!r} is unknown; choose one of {sorted(OPTIMIZERS)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"optim.lr={cfg.lr} must be positive and finite")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise ValueError(f"optim.weight_decay={cfg.weight_decay} must be >= 0 and finite")
    if not (math.isfinite(cfg.eps) and cfg.eps > 0):
        raise ValueError(f"optim.eps={cfg.eps} must be positive and finite")
    if not 0.0 <= cfg.momentum < 1.0:
        raise ValueError(f"optim.momentum={cfg.momentum} must be in [0, 1)")
    default = OptimConfig()
    if cfg.name == "sgd":
        if list(cfg.betas) != default.betas:
            raise ValueError(
                f"optim.betas={list(cfg.betas)} is read only by adam and adamw, but "
                "optim.name='sgd'; remove optim.betas"
            )
        return
    _betas(cfg)
    if cfg.momentum != default.momentum:
        raise ValueError(
            f"optim.momentum={cfg.momentum} is read only by sgd, but optim.name={cfg.name!r} "
            "(Adam's momentum is optim.betas[0]); remove optim.momentum"
        )


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
    validate_optim_config(cfg)
    return OPTIMIZERS[cfg.name](parameter_groups(model.named_parameters(), cfg.weight_decay), cfg)
