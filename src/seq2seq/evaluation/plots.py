"""Figures drawn with matplotlib (off screen, through the Agg canvas, with no global
pyplot state): the classifier's confusion matrix for TensorBoard, and the curves that
`scripts/plot_attention.py` draws for docs/attention.md."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_ANNOTATED = 30
"""Above this many classes the cells are too small for their counts; the colours remain."""


def confusion_figure(matrix: np.ndarray, labels: Sequence[str]) -> Figure:
    """The confusion matrix `(C, C)` (rows: references, columns: predictions, in `labels`'
    order) as a heatmap of each row's shares, with the counts in the cells, the class names
    on both axes and the axes named."""
    size = len(labels)
    totals = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = min(12.0, max(4.0, 0.45 * size + 2.0))
    figure = Figure(figsize=(side, side), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = list(range(size))
    long_names = max((len(label) for label in labels), default=0) > 3
    axes.set_xticks(
        ticks,
        list(labels),
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
    )
    axes.set_yticks(ticks, list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("reference")
    axes.set_title("colour: share of the row", fontsize=9)
    if size <= MAX_ANNOTATED:
        for row in range(size):
            for column in range(size):
                axes.text(
                    column,
                    row,
                    str(int(matrix[row, column])),
                    ha="center",
                    va="center",
                    fontsize=9 if size <= 12 else 7,
                    color="white" if share[row, column] > 0.5 else "black",
                )
    return figure


def figure_image(figure: Figure) -> np.ndarray:
    """An HWC uint8 RGB image of `figure` (what TensorBoard's `add_image` takes)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
