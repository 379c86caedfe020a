"""Named built-in datasets that `data.task` selects besides the generated tasks.

A generated task (`seq2seq.data.tasks.TASKS`) is drawn from a seed at the sizes given;
a built-in dataset here is fixed data with its own fixed split (`g2p_cmudict`,
`python_stdlib`), which `data.train_size`, `data.validation_size` and `data.test_size`
only cap, or a generator with rules of its own (`listops`). Adding one is one entry here,
one member of `seq2seq.config.data.BuiltinData` and one `configs/data/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import datasets

from seq2seq.config.data import DataConfig
from seq2seq.data.cmudict import cmudict_splits
from seq2seq.data.columns import LABEL, SOURCE, TARGET, TEXT
from seq2seq.data.listops import listops_splits
from seq2seq.data.python_stdlib import python_stdlib_splits
from seq2seq.data.tasks import TASKS


@dataclass(frozen=True)
class BuiltinDataset:
    make: Callable[[DataConfig, int], datasets.DatasetDict]
    """`(data settings, seed) -> the train, validation and test splits`."""
    fields: tuple[str, ...]
    """The columns it makes: which task it is for."""
    reads: tuple[str, ...] = ()
    """The generator settings (`min_len`, `max_len`, `num_symbols`) it reads."""


def _caps(cfg: DataConfig) -> dict[str, int | None]:
    return {
        "train_size": cfg.train_size,
        "validation_size": cfg.validation_size,
        "test_size": cfg.test_size,
    }


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "g2p_cmudict": BuiltinDataset(
        lambda cfg, seed: cmudict_splits(
            max_train_words=cfg.train_size,
            max_validation_words=cfg.validation_size,
            max_test_words=cfg.test_size,
        ),
        (SOURCE, TARGET),
    ),
    "listops": BuiltinDataset(
        lambda cfg, seed: listops_splits(
            **_caps(cfg), min_len=cfg.min_len, max_len=cfg.max_len, seed=seed
        ),
        (TEXT, LABEL),
        reads=("min_len", "max_len"),
    ),
    "python_stdlib": BuiltinDataset(lambda cfg, seed: python_stdlib_splits(**_caps(cfg)), (TEXT,)),
}

TASK_CHOICES: tuple[str, ...] = tuple(sorted({*TASKS, *BUILTIN_DATASETS}))
"""Every valid `data.task`: the generated tasks and the built-in datasets."""


def builtin_fields(name: str) -> tuple[str, ...]:
    """The columns the built-in `data.task=name` makes (which kind of training it is for)."""
    return TASKS[name].fields if name in TASKS else BUILTIN_DATASETS[name].fields
