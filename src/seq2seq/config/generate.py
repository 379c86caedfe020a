"""Schema of `configs/generate.yaml` (seq2seq-generate) and its checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import MISSING

from seq2seq.config.checks import check_device_name
from seq2seq.config.command_line import typed_keys
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.training import Precision

STDIO = "-"
SPLITS = ("validation", "test")


@dataclass
class GenerateConfig:
    checkpoint: Any = MISSING
    """A checkpoint `.pt` file, a run dir (its `checkpoints/best.pt` is used) or an export
    dir; or a list of them, `checkpoint=[run1,run2]`, decoded as one ensemble (the mean of
    the models' probabilities at every step). The runs of an ensemble must be of one task
    with the same tokenizers; its first run's config gives the generation settings (what
    is typed applies on top), precision and `max_tokens`. (`-m checkpoint=run1,run2` is a
    sweep: one job per run.)"""
    input: str | None = None
    """A text file with one input per line, or `-` for stdin; null with no `split` reads
    stdin too (`echo phoneme | seq2seq-generate checkpoint=<run>`). Not with `split`."""
    split: str | None = None
    """`validation` or `test`: that split of the run's own data config. Set this or `input`."""
    output: str = STDIO
    """Where the prediction for every input goes, one per line; `-` is stdout. A file is
    written whole at the end (temporary file, then rename; through a symlink, its target),
    never half; a device or FIFO is written in place. In a multirun, a relative path is
    inside each job's dir (`hydra.sweep.dir/<job number>/`); the same holds for
    `nbest_output` and `references_output`."""
    nbest_output: str | None = None
    """Optional file (or `-`) of `index<TAB>rank<TAB>score<TAB>prediction` rows, every n-best
    entry of every input: index is the input's 0-based position, rank 0 is the best, score
    the length-normalised log-probability. Empty inputs have no row."""
    references_output: str | None = None
    """With `split`: a file (or `-`) of the split's references, line for line with `output`,
    an input's several references separated by TABs: the `--ref` of seq2seq-evaluate."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding settings. On the command line, decoding starts from the run's own
    `generation` settings: `generation=<group>` replaces them with that group's (plus any
    typed `generation.<key>=`), and `generation.<key>=value` alone changes only those
    keys. A library call without `command_line` decodes with this node as composed (the
    `greedy` group by default)."""
    top_k: int = 5
    """classification: labels per input in `nbest_output` (`index<TAB>rank<TAB>probability
    <TAB>label` rows), most probable first."""
    max_tokens: int | None = None
    """Padded input tokens per batch; null takes the run's `data.max_tokens`."""
    device: str = "auto"
    """`auto` (cuda when available), `cpu`, `cuda` or `cuda:N`."""
    precision: Precision | None = None
    """`fp32`, or `bf16` or `fp16` (CUDA only) autocast; null takes the run's
    `trainer.precision` (fp32 for an fp16 run decoded on the CPU), as its validation did."""


def checkpoint_values(value: Any) -> list[str]:
    """`checkpoint` as a list of one or more paths (a bare value is a list of one)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError("checkpoint=[] names no run; give checkpoint=<run> or a list of runs")
    for item in values:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise ValueError(
                f"checkpoint={value!r}: give a run dir, a checkpoint file or an export dir, or "
                "a list of them (checkpoint=[run1,run2])"
            )
    return [str(item) for item in values]


def check_generate_config(cfg: GenerateConfig) -> None:
    """The settings of a generate job that need no checkpoint to check."""
    checkpoint_values(cfg.checkpoint)
    if cfg.input is not None and cfg.split is not None:
        raise ValueError(
            "set one of input (a file with one input per line, or '-' for stdin) and split "
            f"({' or '.join(SPLITS)}), not both; got input={cfg.input!r}, split={cfg.split!r}"
        )
    if cfg.split is not None and cfg.split not in SPLITS:
        raise ValueError(f"split={cfg.split!r} is unknown; choose one of {list(SPLITS)}")
    if cfg.references_output is not None and cfg.split is None:
        raise ValueError(
            f"references_output={cfg.references_output!r} needs split=validation or "
            "split=test: inputs from input have no references"
        )
    if cfg.top_k < 1:
        raise ValueError(f"top_k={cfg.top_k} must be a positive integer")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise ValueError(f"max_tokens={cfg.max_tokens} must be a positive integer (or null)")
    check_device_name(cfg.device, field="device")


def typed_generation(command_line: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether `generation=<group>` is among the typed overrides, and the `<key>`s of the
    typed `generation.<key>=...`."""
    typed = typed_keys(command_line)
    keys = [name.removeprefix("generation.") for name in typed if name.startswith("generation.")]
    return "generation" in typed, keys


def decoding_generation(
    run: GenerationConfig, composed: GenerationConfig, command_line: Sequence[str] | None
) -> GenerationConfig:
    """The generation settings to decode with. `command_line`: the overrides the user typed
    (Hydra's task overrides); with none about `generation`, the run's own settings;
    `generation=<group>` takes `composed` (that group's settings, with any typed
    `generation.<key>=`); typed `generation.<key>=` alone change only those keys of the
    run's. None (a library call) takes `composed`."""
    if command_line is None:
        return composed
    group, keys = typed_generation(command_line)
    if group:
        return composed
    return replace(run, **{key: getattr(composed, key) for key in keys})
