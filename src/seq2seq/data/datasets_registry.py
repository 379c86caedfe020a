"""Named built-in datasets that `data.task` selects besides the generated tasks.

A generated task (`seq2seq.data.tasks.TASKS`) is drawn from a seed at the sizes given;
a built-in dataset is fixed data with its own fixed split, which `data.train_size`,
`data.validation_size` and `data.test_size` only cap (a fixed subset of each split; null,
the default, keeps all of it).
Adding one is one entry here and one `configs/data/<name>.yaml`.
"""

from __future__ import annotations

from typing import Protocol

import datasets

from seq2seq.data.cmudict import cmudict_splits
from seq2seq.data.columns import SOURCE, TARGET
from seq2seq.data.tasks import TASKS


class BuiltinDataset(Protocol):
    """Returns the `train`, `validation` and `test` splits, each capped at its size (None:
    all of it)."""

    def __call__(
        self, *, train_size: int | None, validation_size: int | None, test_size: int | None
    ) -> datasets.DatasetDict: ...


def _check_caps(name: str, **sizes: int | None) -> None:
    for field, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(
                f"data.{field}={value} must be positive: for data.task={name!r} it caps the "
                "split (a value above the split's size keeps all of it)"
            )


def _g2p_cmudict(
    *, train_size: int | None, validation_size: int | None, test_size: int | None
) -> datasets.DatasetDict:
    _check_caps(
        "g2p_cmudict", train_size=train_size, validation_size=validation_size, test_size=test_size
    )
    return cmudict_splits(
        max_train_words=train_size, max_validation_words=validation_size, max_test_words=test_size
    )


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "g2p_cmudict": _g2p_cmudict,
}

TASK_CHOICES: tuple[str, ...] = tuple(sorted({*TASKS, *BUILTIN_DATASETS}))
"""Every valid `data.task`: the generated tasks and the built-in datasets."""

BUILTIN_FIELDS: dict[str, tuple[str, ...]] = {"g2p_cmudict": (SOURCE, TARGET)}


def builtin_fields(name: str) -> tuple[str, ...]:
    """The columns the built-in `data.task=name` makes (which kind of training it is for)."""
    return TASKS[name].fields if name in TASKS else BUILTIN_FIELDS[name]
