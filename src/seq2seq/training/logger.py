"""Run outputs: TensorBoard scalars and text, the hparams table, and `metrics.json`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams, scalar
from torch.utils.tensorboard.writer import FileWriter

HPARAMS_SUFFIX = ".hparams"
"""The end of the name of the event file that holds a run dir's HParams row."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}} -> {"a.b": 1}`; lists become strings (HParams takes scalars)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = value
    return flat


class RunLogger:
    """TensorBoard writer for one run (rank 0 only), under `<run_dir>/tensorboard`."""

    def __init__(self, run_dir: Path, *, resumed_step: int = 0) -> None:
        """`resumed_step`: the step a resumed run continues from. What an interrupted run
        logged after it (after its last checkpoint) is hidden, so no step is drawn twice."""
        self.run_dir = run_dir
        self.writer = SummaryWriter(
            log_dir=str(run_dir / "tensorboard"),
            purge_step=resumed_step + 1 if resumed_step else None,
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """`image`: HWC uint8."""
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run dir's one HParams row: every scalar config value against the final
        metrics, in this run's TensorBoard directory so a sweep's runs line up in the
        HParams tab.

        TensorBoard keeps the first row it reads for a directory (its settings and metric
        columns), so the row has an event file of its own, which a resumed run's row
        replaces: the run dir shows the settings of the launch that ended last (a raised
        `trainer.max_steps`) and its figures (the test's, after a stop before the test)."""
        finite = {f"hparam/{k}": v for k, v in metrics.items() if math.isfinite(v)}
        directory = Path(self.writer.log_dir)
        earlier = sorted(directory.glob(f"*tfevents*{HPARAMS_SUFFIX}"))
        row = FileWriter(directory, filename_suffix=HPARAMS_SUFFIX)
        try:
            for summary in hparams(flatten(config), finite):
                row.add_summary(summary)
            for tag, value in finite.items():
                row.add_summary(scalar(tag, value))
        finally:
            row.close()
        # Removed once the new row is written: a crash in between leaves an old row, not none.
        for path in earlier:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
