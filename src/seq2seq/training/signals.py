"""Graceful stop on SIGTERM / SIGINT / SIGUSR2: finish the current step, checkpoint, exit.

SIGUSR2 is the warning SLURM sends through submitit (`signal_delay_s` before the time
limit); submitit's own handler would end the job in the middle of a step. The run
checkpoints first, then the launcher's handler is called (it requeues the job or marks it
timed out), so a requeued job with `trainer.resume=auto` continues where it stopped.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)


class StopRequest:
    """Set by a signal handler; the trainer checks it between optimizer steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR2") if hasattr(signal, name)
)
"""The signals that ask a run to checkpoint and stop (SIGUSR2 does not exist on Windows)."""


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Install the stop handlers for the block; a second SIGINT interrupts at once. On
    leaving the block, a signal that a launcher's own Python handler was waiting for
    (submitit's SIGUSR2) is passed on to it."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signal_name = name
        log.warning("%s received: finishing this step, then checkpointing and exiting", name)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    received = request.signal_name
    if received is not None and received != "SIGINT":
        waiting = previous[signal.Signals[received]]
        if callable(waiting):  # a launcher's handler, not SIG_DFL or SIG_IGN
            signal.raise_signal(signal.Signals[received])
