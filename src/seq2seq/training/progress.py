"""Progress display: a tqdm bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

log = logging.getLogger("seq2seq.train")

PROGRESS_MODES = ("auto", "bar", "log")
"""What `trainer.progress` accepts; the trainer also uses `off` on ranks other than 0."""


class Progress:
    def __init__(self, *, mode: str, total: int, initial: int) -> None:
        self.enabled = mode != "off"
        if self.enabled and mode not in PROGRESS_MODES:
            raise ValueError(
                f"trainer.progress={mode!r} is unknown; choose one of {PROGRESS_MODES}"
            )
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = (
            tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True)
            if use_bar
            else None
        )

    def update(self, step: int, figures: dict[str, float], *, log_line: bool) -> None:
        text = {k: f"{v:.4g}" for k, v in figures.items()}
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(text, refresh=True)
        elif log_line and self.enabled:
            log.info("step %d | %s", step, " | ".join(f"{k} {v}" for k, v in text.items()))

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        elif self.enabled:
            log.info(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
