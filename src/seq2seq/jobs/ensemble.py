"""Several trained runs decoded or evaluated as one ensemble (seq2seq-generate
`checkpoint=[a,b,...]`, seq2seq-evaluate `--checkpoint a b ...`).

The runs must be of one task and share its state (the tokenizers' pieces and ids, a
classifier's labels): the ensemble averages distributions over one vocabulary, and
decodes inputs with the first run's tokenizers. Anything else (depth, width, attention
kinds, training settings) may differ. The first run's config rules the rest: the
generation settings, precision, batch size and the data a split is read from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq.generation.ensemble import ensemble
from seq2seq.jobs.trained_run import TrainedRun, evaluate_model, load_run
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.tokenizer.stored import tokenizer_from_proto

log = logging.getLogger("seq2seq.generate")


@dataclass
class Ensembled:
    """The first run (config, task) and the model to predict with: the first run's own
    model for one checkpoint, else the ensemble of every run's model."""

    first: TrainedRun
    model: nn.Module


def load_ensemble(
    paths: Sequence[Path], device: torch.device, *, names: Sequence[str]
) -> Ensembled:
    """The runs of `paths` (checkpoint files; `names`: as the user typed them, for errors)
    as one model on `device`, in eval mode; runs that cannot be ensembled are refused,
    naming both."""
    runs: list[TrainedRun] = []
    for path, name in zip(paths, names, strict=True):
        run = load_run(path, device)
        if runs:
            check_compatible(runs[0], run, names=(names[0], name))
        runs.append(run)
    if len(runs) == 1:
        return Ensembled(first=runs[0], model=runs[0].model)
    log.info(
        "an ensemble of %d runs (the mean of their probabilities), with the settings of the "
        "first, %s",
        len(runs),
        names[0],
    )
    model = ensemble([run.model for run in runs], model_kind=runs[0].task.model_kind)
    model.eval()
    return Ensembled(first=runs[0], model=model)


def check_compatible(first: TrainedRun, other: TrainedRun, *, names: tuple[str, str]) -> None:
    """Refuse `other` beside `first` unless they are of one task with one task state (the
    tokenizers, a classifier's labels), and `other` has the positions the first run's
    limits let decoding reach. `names`: the two runs as the user typed them."""
    refused = f"{names[1]!r} cannot be ensembled with {names[0]!r}"
    if other.config.task != first.config.task:
        raise ValueError(
            f"{refused}: it is a {other.config.task} run, the other a {first.config.task} run; "
            "ensemble runs of one task"
        )
    differences = state_differences(first.task.state(), other.task.state())
    if differences:
        raise ValueError(
            f"{refused}: their {'; '.join(differences)}; an ensemble averages the models' "
            "distributions over one vocabulary: ensemble runs that share their tokenizers "
            "(trained on the same data with the same tokenizer settings)"
        )
    fewest, most = other.config.model.max_len, first.config.model.max_len
    if fewest < most:
        raise ValueError(
            f"{refused}: it has model.max_len={fewest} positions, the other {most}, which "
            "decoding is limited by (the first run's); list the run with the fewest "
            "positions first"
        )


def state_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """What differs between two task states, readable: `target tokenizers differ (259 vs
    14 ids)`, `labels differ`."""
    differences = []
    for key in sorted(set(first) | set(other)):
        if key not in first or key not in other:
            differences.append(f"task states differ ({key!r} is in one only)")
        elif key == TOKENIZER_KEY:
            differences += _tokenizer_differences(first[key], other[key])
        elif not _equal(first[key], other[key]):
            differences.append(f"{key} differ")
    return differences


def _tokenizer_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The sides whose tokenizers differ, with their sizes; a tokenizer that serves both
    sides in both runs (shared) is named once."""
    sides = [
        side
        for side in sorted(set(first) | set(other), reverse=True)  # source before target
        if side not in first or side not in other or not _equal(first[side], other[side])
    ]
    shared = len(sides) > 1 and all(
        _equal(state[sides[0]], state[side]) for state in (first, other) for side in sides
    )
    differences = []
    for side in sides[:1] if shared else sides:
        if side not in first or side not in other:
            differences.append(f"{side} tokenizers differ (one run has none)")
            continue
        sizes = [
            tokenizer_from_proto(state[side].numpy().tobytes()).vocab_size
            for state in (first, other)
        ]
        detail = (
            f"{sizes[0]} vs {sizes[1]} ids"
            if sizes[0] != sizes[1]
            else f"the same {sizes[0]} ids, but other pieces or scores"
        )
        differences.append(f"{'' if shared else side + ' '}tokenizers differ ({detail})")
    return differences


def _equal(first: Any, other: Any) -> bool:
    if isinstance(first, torch.Tensor) and isinstance(other, torch.Tensor):
        return first.shape == other.shape and bool(torch.equal(first, other))
    if isinstance(first, Mapping) and isinstance(other, Mapping):
        return first.keys() == other.keys() and all(_equal(first[k], other[k]) for k in first)
    return bool(first == other)


def evaluate_ensemble(
    paths: Sequence[Path], split: str, device: torch.device, *, names: Sequence[str]
) -> dict[str, float]:
    """The figures training's evaluation gives a split for the ensemble of `paths` (one
    path: that checkpoint alone), evaluated as its first run's test was
    (`seq2seq.jobs.trained_run.evaluate_model`)."""
    loaded = load_ensemble(paths, device, names=names)
    return evaluate_model(loaded.first, loaded.model, split, device)
