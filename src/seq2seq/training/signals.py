"""Graceful stop on SIGTERM / SIGINT / SIGUSR2: finish the current step, checkpoint, exit.

SIGUSR2 is the warning SLURM sends through submitit (`signal_delay_s` before the time
limit); submitit's own handler would end the job in the middle of a step. The run
checkpoints first, then the launcher's handler is called (it requeues the job or marks it
timed out), and the requeued job continues where it stopped (`seq2seq.training.restarts`).
Under torchrun the workers get the SIGTERM that torchrun forwards (scripts/slurm/train.sbatch).

A second Ctrl-C (SIGINT after any of them) ends the process at once, in one line: the
person pressing it again no longer wants the checkpoint. A second SIGTERM does not: a
scheduler may deliver one to every process of a job and a launcher forward its own
(torchrun), and neither means "now".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from seq2seq.training.run_lock import remove_held_locks

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
PROGRAM = "seq2seq-train"
"""The program named in the line a second Ctrl-C prints."""


def exit_at_once(*, last_checkpoint: Callable[[], Path | None] | None) -> NoReturn:
    """A second Ctrl-C: end the process where it is (in a step, a checkpoint write, the test
    decoding) with one line on stderr and status 130 (128 + SIGINT), as a shell reports a
    process that Ctrl-C ended. `os._exit`, not an exception: an `except` or `finally` on
    the way (torch's, Hydra's) could hold it up or print it as a traceback. A checkpoint
    being written is left as its temporary file, which the next run in the run dir
    removes; the complete ones are untouched (see `seq2seq.atomic`)."""
    line = f"{PROGRAM}: interrupted again: stopped at once, with no new checkpoint or metrics.json"
    if last_checkpoint is not None:
        with contextlib.suppress(OSError):
            latest = last_checkpoint()
            line += (
                "; there is no checkpoint yet"
                if latest is None
                else f"; the last checkpoint is {latest} (continue with trainer.resume=auto "
                "and the same hydra.run.dir)"
            )
    for stream in (sys.stdout, sys.stderr):  # the log lines still buffered come first
        # RuntimeError: the signal interrupted a write to that very stream.
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            stream.flush()
    with contextlib.suppress(OSError):
        os.write(2, f"{line}\n".encode())
    remove_held_locks()
    os._exit(128 + signal.SIGINT)


@contextmanager
def graceful_stop(
    *, last_checkpoint: Callable[[], Path | None] | None = None
) -> Iterator[StopRequest]:
    """Install the stop handlers for the block; a second SIGINT ends the process at once
    (`exit_at_once`; `last_checkpoint` names the checkpoint to continue from). On
    leaving the block, a signal that a launcher's own Python handler was waiting for
    (submitit's SIGUSR2) is passed on to it."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if request.requested and signum == signal.SIGINT:
            exit_at_once(last_checkpoint=last_checkpoint)
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
