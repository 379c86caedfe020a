"""One line for a usage mistake in the Hydra CLIs, as argparse gives the others."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Hydra's own switch for whole tracebacks; honoured here so one setting shows them all.
FULL_ERROR_VARIABLE = "HYDRA_FULL_ERROR"


@contextmanager
def usage_errors(program: str) -> Iterator[None]:
    """Turn an `OSError` or `ValueError` raised inside into `program: error: ...` on
    stderr and exit status 2, instead of a traceback. Bad input raises these two with a
    message that names the field, the value and the valid choices; with
    `HYDRA_FULL_ERROR=1` the exception propagates with its traceback."""
    try:
        yield
    except (OSError, ValueError) as error:
        if os.environ.get(FULL_ERROR_VARIABLE) == "1":
            raise
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
