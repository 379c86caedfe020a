"""`python signal_after_step.py <seq2seq-train arguments>`: seq2seq-train as
`python -m seq2seq.cli.train` runs it, each process sending itself SIGTERM after optimizer
step `$SIGNAL_AFTER_STEP`, as torchrun forwards a scheduler's SIGTERM to every worker: the
stop of a multi-process run, at a step a test chooses. Run by path (by torchrun too)."""

from __future__ import annotations

import os
import runpy
import signal
from typing import Any

from seq2seq.training.trainer import Trainer


def main() -> None:
    stop_after = int(os.environ["SIGNAL_AFTER_STEP"])
    original = Trainer.train_step

    def train_step(self: Trainer, group: Any) -> dict[str, float] | None:
        figures = original(self, group)
        if self.state.step == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return figures

    Trainer.train_step = train_step  # type: ignore[method-assign]
    runpy.run_module("seq2seq.cli.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
