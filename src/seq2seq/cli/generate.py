"""`seq2seq-generate`: decode sources with a trained checkpoint, one hypothesis per line.

    seq2seq-generate checkpoint=outputs/2024-05-01/12-00-00 input=sources.txt output=hyps.txt
    seq2seq-generate checkpoint=run/checkpoints/step_00001500.pt input=- < sources.txt
    seq2seq-generate checkpoint=<run dir> split=test generation=beam generation.beam_size=8 \\
        generation.nbest=4 output=test.hyp nbest_output=test.nbest

`checkpoint` is a `.pt` file or a run dir (then its `checkpoints/best.pt`). The model,
its config and both tokenizers come from the checkpoint alone. Sources are one per line
of `input` (`-` reads stdin), or a split of the run's own data (`split=test`), cleaned
and de-duplicated exactly as training evaluated it, so the output is line for line the
run's `predictions.txt` when the `generation` settings are the run's. Decoding uses the
`generation` node given here (default greedy), not the run's. `python -m
seq2seq.cli.generate ...` is the same program.
"""

from __future__ import annotations

import logging
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
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from seq2seq.atomic import write_text_atomic
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
    is written whole at the end (temporary file, then rename), never half."""
    nbest_output: str | None = None
    """Optional file (or `-`) of `index<TAB>rank<TAB>score<TAB>hypothesis` rows, every n-best
    entry of every source: index is the source's 0-based position, rank 0 is the best,
    score the length-normalised log-probability. Empty sources have no row."""
    references_output: str | None = None
    """With `split`: a file (or `-`) of the split's references, line for line with `output`,
    a source's several references separated by TABs: the `--ref` of seq2seq-evaluate."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding settings (`generation=beam`, `generation.beam_size=8`, ...)."""
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
            f"checkpoint {path} holds a model.kind={train_cfg.model.kind!r} model; "
            "seq2seq-generate decodes 'encoder_decoder' models"
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
    """The lines of a UTF-8 file, or of stdin for `-`; only `\\n` ends a line. Input with
    no line that holds more than whitespace is an error: there is nothing to decode."""
    if source == STDIO:
        data = sys.stdin.buffer.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"input={source!r} is not a file; give a text file or '-'")
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
    raw = load_raw_splits(cfg.data, seed=cfg.seed)
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


def check_destinations(cfg: GenerateConfig, checkpoint: Path) -> None:
    """Refuse, before decoding, an output that would overwrite the input, the checkpoint,
    a directory or another output: a mistake must not cost a file."""
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
        if isinstance(key, Path) and key.is_dir():
            raise ValueError(f"{named} is a directory; give a file path or '-'")
        taken[key] = named


def write_output(text: str, destination: str) -> None:
    """To stdout for `-`; else atomically, so a failed run leaves no partial file."""
    if destination == STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(text, path)


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


def _log_generation_difference(run: GenerationConfig, used: GenerationConfig) -> None:
    differences = [
        f"{name}={value!r} (run: {asdict(run)[name]!r})"
        for name, value in asdict(used).items()
        if asdict(run)[name] != value
    ]
    if differences:
        log.info("decoding differs from the run's generation settings: %s", ", ".join(differences))


def generate_from_config(cfg_node: DictConfig) -> list[str]:
    """Run one seq2seq-generate job; returns the best hypothesis of every source, in order."""
    if OmegaConf.is_missing(cfg_node, "checkpoint"):
        raise ValueError("checkpoint is required: checkpoint=<run dir> or checkpoint=<file.pt>")
    check_known_keys(cfg_node)
    cfg: GenerateConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
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
    # The same limits as training's decoding, so split=test reproduces predictions.txt.
    settings = generation_settings(replace(run.config, generation=cfg.generation))
    _log_generation_difference(run.config.generation, cfg.generation)
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
    write_output(lines_text(predictions), cfg.output)
    if cfg.nbest_output is not None:
        write_output(lines_text(nbest_rows(nbests, run.target_tokenizer)), cfg.nbest_output)
    if cfg.references_output is not None:
        assert reference_lines is not None
        write_output(lines_text(reference_lines), cfg.references_output)
    log.info("decoded %d sources", len(predictions))
    return predictions


@hydra.main(config_path=str(CONFIG_DIR), config_name="generate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with usage_errors("seq2seq-generate"):
        generate_from_config(cfg)


def main() -> None:
    """`seq2seq-generate`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-generate", _hydra_main)


if __name__ == "__main__":
    main()
