"""`python record_first_gradients.py <seq2seq-train arguments>`: seq2seq-train as
`python -m seq2seq.cli.train` runs it, with a global optimizer hook that saves the gradients
of the first optimizer step, the ones the optimizer is about to apply, to
`$RECORD_GRADIENTS_DIR/rank<RANK>.pt` as a list of tensors in parameter order.

A helper of test_ddp.py, run by path (by torchrun too): the trainer zeroes its gradients
after every step and exposes no hook of its own, so the test reaches them through
`torch.optim.optimizer.register_optimizer_step_pre_hook`, which sees every optimizer.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import register_optimizer_step_pre_hook


def main() -> None:
    target = Path(os.environ["RECORD_GRADIENTS_DIR"]) / f"rank{os.environ.get('RANK', '0')}.pt"

    def save_first_step(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        handle.remove()
        gradients = [
            None if parameter.grad is None else parameter.grad.detach().clone()
            for group in optimizer.param_groups
            for parameter in group["params"]
        ]
        torch.save(gradients, target)

    handle = register_optimizer_step_pre_hook(save_first_step)
    runpy.run_module("seq2seq.cli.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
