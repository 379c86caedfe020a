"""The training losses a run logged to TensorBoard, over all its launches: what a resumed
or requeued run is compared by with an unbroken one."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader


def train_losses(run: Path) -> list[tuple[int, float]]:
    """Every `train/loss` point of every event file of `run` (one file per launch), in
    the order the launches wrote them."""
    points = []
    for events in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    points.append((event.step, value.simple_value))
    return points
