"""The confusion-matrix figure names its axes, puts the class names on both and the counts
in the cells; the image TensorBoard gets is RGB."""

from __future__ import annotations

import numpy as np

from seq2seq.evaluation.plots import confusion_figure, figure_image


def test_the_confusion_figure_names_axes_classes_and_counts() -> None:
    matrix = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 4]])
    labels = ["cat", "dog", "eel"]
    figure = confusion_figure(matrix, labels)
    (axes,) = figure.axes
    assert axes.get_xlabel() == "predicted" and axes.get_ylabel() == "reference"
    assert [t.get_text() for t in axes.get_xticklabels()] == labels
    assert [t.get_text() for t in axes.get_yticklabels()] == labels
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in axes.texts
    }
    assert cells == {(r, c): str(matrix[r, c]) for r in range(3) for c in range(3)}
    shares = axes.images[0].get_array()
    assert np.allclose(shares.sum(1), 1.0) and shares[1, 1] == 0.7


def test_the_image_is_hwc_rgb_uint8() -> None:
    image = figure_image(confusion_figure(np.eye(2, dtype=int), ["a", "b"]))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.min() < 100 < image.max()  # drawn, not blank
