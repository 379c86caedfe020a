"""What the user typed on a Hydra command line: this job's overrides and the keys they set.

Some checks concern only what was typed, not what a recipe set (a recipe's data settings
that a user switching data cannot remove), and seq2seq-generate starts from the run's own
decoding settings unless `generation` was typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf


def typed_overrides() -> list[str]:
    """The running job's overrides as typed (Hydra's `overrides.task`), unresolved: an
    override holding a broken interpolation is reported when the config is read, as one
    line, not while listing the command line."""
    task = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    assert isinstance(task, list)
    return [str(override) for override in task]


def typed_keys(command_line: Sequence[str]) -> list[str]:
    """The key or group each override sets, in order, without `+`, `++` or `~`:
    `data.min_len`, `generation`."""
    overrides = OverridesParser.create().parse_overrides(list(command_line))
    return [override.key_or_group for override in overrides]
