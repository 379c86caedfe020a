"""The suite leaves torch's thread count to the environment."""

from __future__ import annotations

import subprocess
import sys

import torch


def test_torch_threads_are_what_the_environment_gives_a_fresh_process() -> None:
    """Outside the fixtures that set one thread and restore it, the suite's intra-op pool
    is the one a fresh `import torch` gets from this environment (`OMP_NUM_THREADS`,
    capped by torch at the usable cores): nothing in the suite's setup overrides it, so
    `OMP_NUM_THREADS=1 pytest` runs on one busy core."""
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert torch.get_num_threads() == int(fresh.stdout)
