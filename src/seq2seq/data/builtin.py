"""The built-in datasets that `data.builtin` selects: one registry, `BUILTIN_DATASETS`.

A generated dataset (`seq2seq.data.generated.GENERATORS`) is drawn from a seed at the sizes
given; a fixed one has its own split (`g2p_cmudict`, `python_stdlib`), which
`data.train_size`, `data.validation_size` and `data.test_size` only cap; `listops` is a
generator with rules of its own, and so is `mqar` (multi-query associative recall, whose
answers `seq2seq.data.mqar.answer_offsets` locates for the `mqar` metric). Adding one is a module that makes its splits, one entry
here and one `configs/data/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import datasets

from seq2seq.config.data import DataConfig
from seq2seq.data.cmudict import cmudict_splits
from seq2seq.data.columns import LABEL, SOURCE, TARGET, TEXT
from seq2seq.data.generated import GENERATORS, generate_splits
from seq2seq.data.listops import listops_splits
from seq2seq.data.mqar import mqar_splits
from seq2seq.data.python_stdlib import python_stdlib_splits

GENERATOR_SETTINGS = ("min_len", "max_len", "num_symbols")
"""The data settings that only generators read (each dataset declares which it reads)."""


@dataclass(frozen=True)
class BuiltinDataset:
    make: Callable[[DataConfig, int], datasets.DatasetDict]
    """`(data settings, seed) -> the train, validation and test splits`."""
    fields: tuple[str, ...]
    """The columns it makes: which task it is for."""
    reads: tuple[str, ...] = ()
    """The generator settings (of `GENERATOR_SETTINGS`) it reads."""


def _caps(cfg: DataConfig) -> dict[str, int | None]:
    return {
        "train_size": cfg.train_size,
        "validation_size": cfg.validation_size,
        "test_size": cfg.test_size,
    }


def _generated(name: str) -> BuiltinDataset:
    generator = GENERATORS[name]

    def make(cfg: DataConfig, seed: int) -> datasets.DatasetDict:
        return generate_splits(
            name,
            **_caps(cfg),
            min_len=cfg.min_len,
            max_len=cfg.max_len,
            num_symbols=cfg.num_symbols,
            seed=seed,
        )

    reads = GENERATOR_SETTINGS if generator.reads_symbols else ("min_len", "max_len")
    return BuiltinDataset(make, generator.fields, reads)


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    **{name: _generated(name) for name in GENERATORS},
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
    "mqar": BuiltinDataset(
        lambda cfg, seed: mqar_splits(
            **_caps(cfg), min_pairs=cfg.min_len, max_pairs=cfg.max_len, seed=seed
        ),
        (TEXT,),
        reads=("min_len", "max_len"),
    ),
    "python_stdlib": BuiltinDataset(lambda cfg, seed: python_stdlib_splits(**_caps(cfg)), (TEXT,)),
}


def builtin_dataset(name: str) -> BuiltinDataset:
    """The built-in dataset `name`; an unknown name fails listing the valid ones."""
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        raise ValueError(
            f"data.builtin={name!r} is not a built-in dataset; choose one of "
            f"{sorted(BUILTIN_DATASETS)}"
        ) from None
