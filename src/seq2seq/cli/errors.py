"""One line for a usage mistake in the Hydra CLIs, as argparse gives the others."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
    SearchPathException,
)
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from seq2seq.config.keys import renamed_key_message

# Hydra's own switch for whole tracebacks; honoured here so one setting shows them all.
FULL_ERROR_VARIABLE = "HYDRA_FULL_ERROR"
# Set by run_cli when the user did not ask for tracebacks (it sets Hydra's switch itself).
ONE_LINE_VARIABLE = "SEQ2SEQ_ONE_LINE_ERRORS"

USAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)
"""Bad input found by our checks, which name the field, the value and the valid choices."""
COMPOSITION_ERRORS: tuple[type[BaseException], ...] = (
    ConfigCompositionException,
    OverrideParseException,
    SearchPathException,
)
"""Bad input found by Hydra while composing the config, before any job runs."""
NO_TRIAL_FINISHED = "No trials are completed yet."
"""Optuna's ValueError when the sweeper asks for the best of a study whose every trial
failed; each trial's own error was logged as it failed and is in its failure.json."""


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")


def usage_message(error: BaseException) -> str:
    """`error` as one line. Hydra's composition errors are several lines with the cause
    chained; this keeps what names the field and the choices: a misspelt key gets the
    valid keys of its node, an unknown group option the available options."""
    if isinstance(error, MissingConfigException) and error.options:
        return f"{_first_line(error)}; choose one of {sorted(error.options)}"
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override {error.override!r}: {_first_line(error)}"
    if isinstance(error, SearchPathException):  # --config-dir names no directory
        return f"{_first_line(error)}: --config-dir (-cd) takes a directory of YAML configs"
    message = _first_line(error).rstrip(".")
    cause = error.__cause__
    if isinstance(error, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        message = f"{message}: {_first_line(cause)}"
        error = cause
    elif isinstance(error, ConfigCompositionException):
        # Hydra's own advice follows on numbered lines (how to quote a value with a comma).
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        renamed = renamed_key_message(str(getattr(error, "full_key", "")))
        if renamed is not None:
            return renamed
        node = getattr(error, "object_type", None)
        if isinstance(node, type) and dataclasses.is_dataclass(node):
            message += f"; valid keys: {[field.name for field in dataclasses.fields(node)]}"
    return message


def _config_error_line(error: BaseException) -> str:
    """OmegaConf's errors (a broken interpolation) add lines of context; keep the first
    and the key it names."""
    if not isinstance(error, OmegaConfBaseException):
        return str(error)
    key = getattr(error, "full_key", None)
    return f"{_first_line(error)} (in {key})" if key else _first_line(error)


@contextmanager
def usage_errors(program: str) -> Iterator[None]:
    """Inside a task function run by `run_cli`: report bad input at once, before Hydra's
    job runner adds its own "Error executing job" line. Elsewhere (tests, or with
    `HYDRA_FULL_ERROR=1`) the exception propagates."""
    try:
        yield
    except USAGE_ERRORS as error:
        if os.environ.get(ONE_LINE_VARIABLE) != "1":
            raise
        print(f"{program}: error: {_config_error_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def run_dir_message(error: OSError, argv: list[str] | None = None) -> str:
    """Hydra could not make the run dir: the path, why, and the setting that chose it."""
    multirun = any(arg in ("-m", "--multirun") for arg in (sys.argv[1:] if argv is None else argv))
    setting = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    where = f" {error.filename!r}" if error.filename is not None else ""
    reason = error.strerror or str(error)
    return (
        f"cannot make the run dir ({setting}):{where}: {reason}; set {setting} to a "
        "writable directory"
    )


class SweepJobFailed(Exception):
    """A sweep job refused its config or data (a usage error, already in its
    failure.json); Hydra re-raises it after the other jobs, and `run_cli` prints one line."""


def run_cli(
    program: str,
    hydra_main: Callable[[], Any],
    *,
    before: Callable[[list[str]], None] | None = None,
) -> None:
    """Run a `@hydra.main` function and report bad input as `program: error: ...` on
    stderr with exit status 2: what Hydra finds while composing the config (a misspelt
    key, a wrong type, an unknown group option) here, what our checks find in a single
    run through `usage_errors` inside the task function.

    Hydra prints its own multi-line report and exits 1 unless `HYDRA_FULL_ERROR=1`, so it
    is set here to make Hydra raise. A user who sets it gets every traceback. Anything
    else (a sweep job's failure, which Hydra re-raises after the other jobs; a bug) keeps
    its traceback. `before(argv)`: checks of the whole command line before Hydra runs any
    job (every job of a sweep); its ValueError is a usage error too.
    """
    if os.environ.get(FULL_ERROR_VARIABLE) == "1":
        if before is not None:
            before(sys.argv[1:])
        hydra_main()
        return
    os.environ[FULL_ERROR_VARIABLE] = "1"
    os.environ[ONE_LINE_VARIABLE] = "1"
    try:
        if before is not None:
            before(sys.argv[1:])
    except (*COMPOSITION_ERRORS, *USAGE_ERRORS) as error:
        print(f"{program}: error: {usage_message(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        hydra_main()
    except COMPOSITION_ERRORS as error:
        print(f"{program}: error: {usage_message(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        # A job's own OSError is a usage error reported inside the job (`usage_errors`,
        # or a failed sweep job); one that escapes comes from Hydra making the run dir
        # (or the sweep dir) before any job runs.
        print(f"{program}: error: {run_dir_message(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except SweepJobFailed as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except ValueError as error:
        if str(error) != NO_TRIAL_FINISHED:
            raise
        print(
            f"{program}: error: every trial of the search failed; the warnings above and "
            "each trial's failure.json (in hydra.sweep.dir) say why",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def run_path_job(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    job: Callable[[argparse.Namespace], Any],
) -> int:
    """An argparse CLI that runs one job and prints the path it wrote (seq2seq-average,
    seq2seq-export): log lines on stderr, a refused input (OSError, ValueError) as one
    `prog: error:` line with exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = parser.parse_args(argv)
    try:
        path = job(args)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(path)
    return 0
