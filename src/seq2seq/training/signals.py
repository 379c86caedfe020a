"""Graceful stop on SIGTERM / SIGINT: finish the current step, checkpoint, exit cleanly."""

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


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Install SIGTERM/SIGINT handlers for the block; a second SIGINT interrupts at once."""
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

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
