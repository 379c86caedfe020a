"""`seq2seq-generate`: decode sources with a trained checkpoint, one hypothesis per line.

    seq2seq-generate checkpoint=outputs/2024-05-01/12-00-00 input=sources.txt output=hyps.txt
    seq2seq-generate checkpoint=run/checkpoints/step_00001500.pt input=- < sources.txt
    seq2seq-generate checkpoint=<run dir> split=test generation=beam generation.beam_size=8 \\
        generation.nbest=4 output=test.hyp nbest_output=test.nbest

`checkpoint` is a `.pt` file or a run dir (then its `checkpoints/best.pt`). The model,
its config and both tokenizers come from the checkpoint alone. Sources are one per line
of `input` (`-` reads stdin; a FIFO or `<(...)` works too), or a split of the run's own
data (`split=test`), cleaned and de-duplicated exactly as training evaluated it.

Decoding uses the run's own `generation` settings, so `split=test` gives the run's
`predictions.txt` line for line. What is typed applies on top: `generation=<group>`
replaces them with that group's settings (and any typed `generation.<key>=`), and
`generation.<key>=value` alone changes only those keys of the run's.

Outputs are checked (writable, not the input or the checkpoint, not one another) before
the model is loaded. In a multirun (`-m`), a relative output path is written inside
each job's own dir (`hydra.sweep.dir/<job number>/`), so jobs never share a file.
`python -m seq2seq.cli.generate ...` is the same program.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import hydra
import torch
import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from seq2seq.atomic import replaced_atomically, write_text_atomic
from seq2seq.cli.command_line import typed_keys, typed_overrides
from seq2seq.cli.errors import run_cli, usage_errors
from seq2seq.cli.prepare import clean_role, evaluation_set, load_raw_splits
from seq2seq.cli.train import CONFIG_DIR
from seq2seq.cli.validate import generation_settings, length_limits
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.keys import check_known_keys
from seq2seq.config.schema import TrainConfig
from seq2seq.data.batching import length_sorted_chunks
from seq2seq.generation import GenerationSettings, Hypothesis, generate
from seq2seq.model import build_model
from seq2seq.model.seq2seq import EncoderDecoderTransformer
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, tokenize_splits
from seq2seq.tokenizer.stored import stored_tokenizers
from seq2seq.training.checkpoint import BEST_NAME, load_checkpoint, strip_prefixes
from seq2seq.training.devices import resolve_device
from seq2seq.training.evaluator import EvaluationSet
from seq2seq.training.trainer import PRECISIONS, check_precision
from seq2seq.utf8 import decode_utf8

log = logging.getLogger("seq2seq.generate")

SCHEMA_NAME = "generate_schema"
STDIO = "-"
SPLITS = ("validation", "test")


@dataclass
class GenerateConfig:
    """Schema of `configs/generate.yaml`."""

    checkpoint: str = MISSING
    """A checkpoint `.pt` file, or a run dir (its `checkpoints/best.pt` is used)."""
    input: str | None = None
    """A text file with one source per line, or `-` for stdin. Set this or `split`."""
    split: str | None = None
    """`validation` or `test`: that split of the run's own data config. Set this or `input`."""
    output: str = STDIO
    """Where the best hypothesis of every source goes, one per line; `-` is stdout. A file
    is written whole at the end (temporary file, then rename; through a symlink, its
    target), never half; a device or FIFO is written in place. In a multirun, a relative
    path is inside each job's dir (`hydra.sweep.dir/<job number>/`); the same holds for
    `nbest_output` and `references_output`."""
    nbest_output: str | None = None
    """Optional file (or `-`) of `index<TAB>rank<TAB>score<TAB>hypothesis` rows, every n-best
    entry of every source: index is the source's 0-based position, rank 0 is the best,
    score the length-normalised log-probability. Empty sources have no row."""
    references_output: str | None = None
    """With `split`: a file (or `-`) of the split's references, line for line with `output`,
    a source's several references separated by TABs: the `--ref` of seq2seq-evaluate."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding settings. On the command line, decoding starts from the run's own
    `generation` settings: `generation=<group>` replaces them with that group's (plus any
    typed `generation.<key>=`), and `generation.<key>=value` alone changes only those
    keys. A library call of `generate_from_config` without `command_line` decodes with
    this node as composed (the `greedy` group by default)."""
    max_tokens: int | None = None
    """Padded source tokens per batch; null takes the run's `data.max_tokens`."""
    device: str = "auto"
    """`auto` (cuda when available), `cpu`, `cuda` or `cuda:N`."""
    precision: str | None = None
    """`fp32`, or `bf16` or `fp16` (CUDA only) autocast; null takes the run's
    `trainer.precision` (fp32 for an fp16 run decoded on the CPU), as its validation did."""


ConfigStore.instance().store(name=SCHEMA_NAME, node=GenerateConfig)


@dataclass
class Run:
    """A trained model rebuilt from one checkpoint, ready to decode."""

    model: EncoderDecoderTransformer
    config: TrainConfig
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer


def checkpoint_file(value: str) -> Path:
    """`checkpoint=` as a file: a `.pt` path, or a run dir's `checkpoints/best.pt`."""
    path = Path(value)
    if path.is_dir():
        for candidate in (path / "checkpoints" / BEST_NAME, path / BEST_NAME):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"checkpoint={value!r} is a directory without checkpoints/{BEST_NAME}; pass a run "
            "dir of seq2seq-train or a checkpoint .pt file"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint={value!r} does not exist; pass a run dir of seq2seq-train or a "
            "checkpoint .pt file"
        )
    return path


def load_run(path: Path, device: torch.device) -> Run:
    """Rebuild the model, its training config and its tokenizers from one checkpoint file."""
    run = rebuild_run(load_checkpoint(path), path)
    run.model.to(device)
    return run


def rebuild_run(checkpoint: dict[str, Any], path: Path) -> Run:
    """The model of a loaded checkpoint (weights in, on the CPU, in eval mode), its training
    config and its tokenizers; `path` only names the file in errors."""
    try:
        config = OmegaConf.merge(
            OmegaConf.structured(TrainConfig), OmegaConf.create(checkpoint["config"])
        )
        train_cfg: TrainConfig = OmegaConf.to_object(config)  # type: ignore[assignment]
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        raise ValueError(
            f"checkpoint {path}: its saved config does not fit the current TrainConfig "
            f"schema ({error})"
        ) from error
    if train_cfg.model.kind != "encoder_decoder":
        raise ValueError(
            f"checkpoint {path} holds a model.kind={train_cfg.model.kind!r} model; only "
            "'encoder_decoder' models can be decoded or averaged"
        )
    source, target = stored_tokenizers(checkpoint, path)
    model = build_model(
        train_cfg.model,
        src_vocab_size=source.vocab_size,
        tgt_vocab_size=target.vocab_size,
        pad_id=PAD_ID,
        seed=train_cfg.seed,
    )
    assert isinstance(model, EncoderDecoderTransformer)
    try:
        model.load_state_dict(strip_prefixes(checkpoint["model"]))
    except RuntimeError as error:  # missing, unexpected or misshapen weights
        raise ValueError(
            f"checkpoint {path}: its weights do not fit the model its config builds ({error})"
        ) from error
    model.eval()
    return Run(model=model, config=train_cfg, source_tokenizer=source, target_tokenizer=target)


def read_lines(source: str) -> list[str]:
    """The lines of a UTF-8 file (or FIFO, or `/dev/fd/N` of a shell's `<(...)`), or of
    stdin for `-`; only `\\n` ends a line. Input with no line that holds more than
    whitespace is an error: there is nothing to decode."""
    if source == STDIO:
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if path.is_dir():
            raise IsADirectoryError(f"input={source!r} is a directory; give a text file or '-'")
        if not path.exists():
            raise FileNotFoundError(f"input={source!r} does not exist; give a text file or '-'")
        data = path.read_bytes()
    text = decode_utf8(data, what=f"input={source!r}")
    if not text.strip():
        raise ValueError(f"input={source!r} has no line to decode (it is empty or blank)")
    # Split on "\n" alone: a lone "\r" stays inside its line.
    return [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]


def encode_lines(lines: Sequence[str], tokenizer: Tokenizer, *, max_len: int) -> list[list[int]]:
    """Token ids per line; blank lines give [] (decoded as empty output lines).

    A line longer than `max_len` tokens is an error naming its 1-based line number: the
    model has no position for it, and cutting it silently would give a wrong translation.
    """
    encoded = tokenizer.encode_batch(list(lines))
    overlong = [(n, len(ids)) for n, ids in enumerate(encoded, start=1) if len(ids) > max_len]
    if overlong:
        line, length = overlong[0]
        others = f" ({len(overlong) - 1} more lines are too)" if len(overlong) > 1 else ""
        raise ValueError(
            f"input line {line} has {length} source tokens, more than model.max_len={max_len}"
            f"{others}; shorten or split such lines"
        )
    empty = sum(1 for ids in encoded if not ids)
    if empty:
        log.warning("%d empty input line(s) give empty output lines", empty)
    unknown = [
        n for n, ids in enumerate(encoded, start=1) if ids and ids.count(UNK_ID) * 2 >= len(ids)
    ]
    if unknown:
        # Such lines decode to something, but from little more than <unk>: most often the
        # input is not in the format the model was trained on (e.g. "hello" for "h e l l o").
        log.warning(
            "%d input line(s) are half or more unknown tokens (first: line %d); is the input in "
            "the format of the training data's sources?",
            len(unknown),
            unknown[0],
        )
    return encoded


def split_sources(run: Run, split: str) -> EvaluationSet:
    """A split of the run's data, tokenized, cleaned and de-duplicated as training did."""
    cfg = run.config
    try:
        raw = load_raw_splits(cfg.data, seed=cfg.seed, roles=[split])
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"split={split!r} reads the data the run's config names, from the working "
            f"directory: {error}"
        ) from error
    if split not in raw:
        raise ValueError(
            f"split={split!r}: the run's data has no {split} split (it has {sorted(raw)}); "
            f"check data.splits.{split} and data.data_files.{split} of the run's config"
        )
    tokenized = tokenize_splits(
        datasets.DatasetDict({split: raw[split]}), run.source_tokenizer, run.target_tokenizer
    )
    cleaned, _ = clean_role(
        tokenized[split], split, data=cfg.data, length_limits=length_limits(cfg)
    )
    return evaluation_set(cleaned, run.target_tokenizer)


def references_rows(references: Sequence[Sequence[str]]) -> list[str]:
    """One line per source, its references separated by TABs (seq2seq-evaluate's format)."""
    for index, alternatives in enumerate(references):
        for reference in alternatives:
            if "\t" in reference or "\n" in reference:
                raise ValueError(
                    f"reference {reference!r} of source {index} holds a TAB or newline, so it "
                    "cannot be written as a line of TAB-separated references"
                )
    return ["\t".join(alternatives) for alternatives in references]


def pad_sources(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """rows: B non-empty id lists -> tokens (B, S) long padded with PAD_ID, mask (B, S) bool."""
    lengths = torch.tensor([len(row) for row in rows])
    width = int(lengths.max())
    tokens = torch.tensor([[*row, *[PAD_ID] * (width - len(row))] for row in rows])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    return tokens, mask


def decode_sources(
    model: EncoderDecoderTransformer,
    sources: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    max_tokens: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> list[list[Hypothesis]]:
    """N-best lists in the order of `sources`; an empty source gets an empty list.

    Sources are decoded in batches of similar length (less padding), then put back.
    """
    results: list[list[Hypothesis]] = [[] for _ in sources]
    real = [i for i, ids in enumerate(sources) if ids]
    chunks = length_sorted_chunks([len(sources[i]) for i in real], max_tokens)
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else nullcontext()
    )
    with (
        tqdm(total=len(real), desc="generating", unit="src", file=sys.stderr) as progress,
        autocast,
    ):
        for chunk in chunks:
            indices = [real[i] for i in chunk]
            tokens, mask = pad_sources([sources[i] for i in indices])
            hypotheses = generate(
                model,
                tokens.to(device),
                mask.to(device),
                settings,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                pad_id=PAD_ID,
                source_ids=indices,
            )
            for index, nbest in zip(indices, hypotheses, strict=True):
                results[index] = nbest
            progress.update(len(indices))
    return results


OUTPUT_OPTIONS = ("output", "nbest_output", "references_output")


def in_job_dir(cfg: GenerateConfig, job_dir: Path) -> GenerateConfig:
    """`cfg` for one job of a multirun: a relative output path goes inside the job's own
    dir, so jobs never write one file (the last would silently win). An absolute path,
    which every job would share, is refused unless it is a device or FIFO."""
    changes: dict[str, Any] = {}
    for option in OUTPUT_OPTIONS:
        destination = getattr(cfg, option)
        if destination in (None, STDIO):
            continue
        path = Path(destination)
        if not path.is_absolute():
            changes[option] = str(job_dir / path)
        elif replaced_atomically(path):
            raise ValueError(
                f"{option}={destination!r}: every job of the multirun would write this one "
                "file; give a relative path (each job writes it in its own dir, "
                "hydra.sweep.dir/<job number>/) or '-'"
            )
    return replace(cfg, **changes)


def unwritable(path: Path) -> str | None:
    """Why `path` cannot be written, or None. A device or FIFO is written in place, so it
    must be writable; anything else is replaced through a temporary file beside it (or
    its symlink's target), so its directory must be writable, or creatable in the nearest
    directory that exists."""
    if not replaced_atomically(path):
        return None if os.access(path, os.W_OK) else "permission denied"
    directory = Path(os.path.realpath(path)).parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot write in the directory {directory} (permission denied)"
    return None


def check_destinations(cfg: GenerateConfig, checkpoint: Path) -> None:
    """Refuse, before the model is loaded, an output that would overwrite the input, the
    checkpoint, a directory or another output, or that cannot be written: a mistake must
    cost neither a file nor a decode."""
    protected = {checkpoint.resolve(): f"checkpoint={cfg.checkpoint!r}"}
    if cfg.input not in (None, STDIO):
        protected[Path(cfg.input).resolve()] = f"input={cfg.input!r}"
    taken: dict[str | Path, str] = {}
    for option in OUTPUT_OPTIONS:
        destination = getattr(cfg, option)
        if destination is None:
            continue
        named = f"{option}={destination!r}"
        key: str | Path = STDIO if destination == STDIO else Path(destination).resolve()
        if key in taken:
            raise ValueError(f"{named} is also {taken[key]}; give each output its own file")
        if key in protected:
            raise ValueError(f"{named} would overwrite {protected[key]}; choose another file")
        if isinstance(key, Path):
            if key.is_dir():
                raise ValueError(f"{named} is a directory; give a file path or '-'")
            problem = unwritable(Path(destination))
            if problem is not None:
                raise ValueError(f"{named}: {problem}; choose another file")
        taken[key] = named


def write_output(text: str, destination: str, *, option: str) -> None:
    """To stdout for `-`; else through `write_text_atomic` (a regular file is never left
    half-written); an error names the option."""
    if destination == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_text_atomic(text, Path(destination))
    except OSError as error:
        raise OSError(f"{option}={destination!r}: cannot write it ({error})") from error


def lines_text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def nbest_rows(nbests: Sequence[Sequence[Hypothesis]], tokenizer: Tokenizer) -> list[str]:
    return [
        f"{index}\t{rank}\t{hypothesis.score:.6f}\t{tokenizer.decode(hypothesis.tokens)}"
        for index, nbest in enumerate(nbests)
        for rank, hypothesis in enumerate(nbest)
    ]


def decoding_precision(requested: str | None, trained: str, device: torch.device) -> str:
    """The autocast precision: `requested`, or else the run's own where `device` has it."""
    if requested is None:
        if trained == "fp16" and device.type != "cuda":
            log.info("the run trained in fp16, which needs CUDA; decoding in fp32 on %s", device)
            return "fp32"
        return trained
    check_precision(requested, device, field="precision")
    return requested


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


def typed_generation(command_line: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether `generation=<group>` is among the typed overrides, and the `<key>`s of the
    typed `generation.<key>=...`."""
    typed = typed_keys(command_line)
    keys = [name.removeprefix("generation.") for name in typed if name.startswith("generation.")]
    return "generation" in typed, keys


def _log_generation_difference(run: GenerationConfig, used: GenerationConfig) -> None:
    differences = [
        f"{name}={value!r} (run: {asdict(run)[name]!r})"
        for name, value in asdict(used).items()
        if asdict(run)[name] != value
    ]
    if differences:
        log.info("decoding differs from the run's generation settings: %s", ", ".join(differences))


def generate_from_config(
    cfg_node: DictConfig,
    *,
    command_line: Sequence[str] | None = None,
    job_dir: Path | None = None,
) -> list[str]:
    """Run one seq2seq-generate job; returns the best hypothesis of every source, in order.

    `command_line`: the overrides the user typed; decoding then starts from the run's
    generation settings (see `decoding_generation`); None decodes with `cfg_node.generation`
    as composed. `job_dir`: a multirun job's own dir, where relative output paths go.
    """
    if OmegaConf.is_missing(cfg_node, "checkpoint"):
        raise ValueError("checkpoint is required: checkpoint=<run dir> or checkpoint=<file.pt>")
    check_known_keys(cfg_node)
    cfg: GenerateConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    if job_dir is not None:
        cfg = in_job_dir(cfg, job_dir)
    if (cfg.input is None) == (cfg.split is None):
        raise ValueError(
            "set exactly one of input (a file with one source per line, or '-' for stdin) "
            f"and split ({' or '.join(SPLITS)}); got input={cfg.input!r}, split={cfg.split!r}"
        )
    if cfg.split is not None and cfg.split not in SPLITS:
        raise ValueError(f"split={cfg.split!r} is unknown; choose one of {list(SPLITS)}")
    if cfg.precision is not None and cfg.precision not in PRECISIONS:
        raise ValueError(
            f"precision={cfg.precision!r} is unknown; choose one of {list(PRECISIONS)}"
        )
    if cfg.references_output is not None and cfg.split is None:
        raise ValueError(
            f"references_output={cfg.references_output!r} needs split=validation or "
            "split=test: sources from input have no references"
        )
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise ValueError(f"max_tokens={cfg.max_tokens} must be a positive integer (or null)")
    device = resolve_device(cfg.device, field="device")
    checkpoint = checkpoint_file(cfg.checkpoint)
    check_destinations(cfg, checkpoint)
    lines = None if cfg.input is None else read_lines(cfg.input)

    run = load_run(checkpoint, device)
    precision = decoding_precision(cfg.precision, run.config.trainer.precision, device)
    generation = decoding_generation(run.config.generation, cfg.generation, command_line)
    try:
        # The same limits as training's decoding, so split=test reproduces predictions.txt.
        settings = generation_settings(replace(run.config, generation=generation))
    except ValueError as error:
        if command_line is None or typed_generation(command_line)[0]:
            raise
        raise ValueError(
            f"{error} (decoding starts from the run's generation settings; "
            "generation=<group> starts from that group's instead)"
        ) from error
    _log_generation_difference(run.config.generation, generation)
    reference_lines = None
    if lines is not None:
        sources = encode_lines(lines, run.source_tokenizer, max_len=run.config.model.max_len)
    else:
        assert cfg.split is not None
        evaluation = split_sources(run, cfg.split)
        sources = evaluation.source_ids
        if cfg.references_output is not None:
            reference_lines = references_rows(evaluation.references)

    nbests = decode_sources(
        run.model,
        sources,
        settings,
        max_tokens=run.config.data.max_tokens if cfg.max_tokens is None else cfg.max_tokens,
        device=device,
        autocast_dtype=PRECISIONS[precision],
    )
    decode = run.target_tokenizer.decode
    predictions = [decode(nbest[0].tokens) if nbest else "" for nbest in nbests]
    texts = {"output": lines_text(predictions)}
    if cfg.nbest_output is not None:
        texts["nbest_output"] = lines_text(nbest_rows(nbests, run.target_tokenizer))
    if reference_lines is not None:
        texts["references_output"] = lines_text(reference_lines)
    for option, text in texts.items():
        write_output(text, getattr(cfg, option), option=option)
    log.info("decoded %d sources", len(predictions))
    return predictions


@hydra.main(config_path=str(CONFIG_DIR), config_name="generate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    with usage_errors("seq2seq-generate"):
        generate_from_config(
            cfg,
            command_line=typed_overrides(),
            job_dir=Path(hydra_cfg.runtime.output_dir) if multirun else None,
        )


def main() -> None:
    """`seq2seq-generate`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-generate", _hydra_main)


if __name__ == "__main__":
    main()
