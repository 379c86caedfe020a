"""Config -> the raw splits of a dataset, and for source/target data their tokenized, cleaned
forms and tokenizers (training and seq2seq-generate's `split=` read them alike)."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets

from seq2seq.config.data import DataConfig, TokenizerConfig
from seq2seq.data.builtin import builtin_dataset
from seq2seq.data.cleaning import CleanReport, clean_split
from seq2seq.data.loading import columns_of, load_splits, load_stream
from seq2seq.data.streaming import DEFAULT_TOKENIZER_EXAMPLES, first_rows, unreadable
from seq2seq.data.tokenization import build_tokenizers, tokenize_splits
from seq2seq.tokenizer import Tokenizer
from seq2seq.writable import directory_problem

log = logging.getLogger("seq2seq.data")


@dataclass
class PreparedPairs:
    splits: datasets.DatasetDict
    """Roles `train` and, when present, `validation` and `test`; columns `source`,
    `target`, `source_ids`, `target_ids`."""
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    reports: dict[str, CleanReport]


PAIR_COLUMNS = ("source", "target")
"""The fields of seq2seq data (`data.source`, `data.target` name their columns)."""


def load_raw_splits(
    cfg: DataConfig,
    *,
    seed: int,
    fields: Sequence[str] = PAIR_COLUMNS,
    roles: Collection[str] | None = None,
) -> datasets.DatasetDict:
    """The splits `cfg` asks for, by role, with the task's `fields` as string columns (a
    file's columns are the ones `data.<field>` names; a built-in dataset has them); a role
    whose `data.splits` entry is null is left out, and so is one not in `roles` when it is
    given (its files are not read)."""
    wanted = {
        role: split
        for role, split in asdict(cfg.splits).items()
        if split is not None and (roles is None or role in roles)
    }
    if cfg.builtin is not None:
        splits = _builtin_splits(cfg, seed=seed)
        return datasets.DatasetDict({role: splits[role] for role in wanted})
    assert cfg.path is not None
    every_file = asdict(cfg.data_files)
    files = {name: file for name, file in every_file.items() if name in wanted.values()}
    if roles is not None and any(every_file.values()) and not any(files.values()):
        return datasets.DatasetDict()  # local files, none of them for these roles
    return load_splits(
        path=cfg.path,
        name=cfg.name,
        data_files=files if roles is not None else every_file,
        splits=wanted,
        columns={field: getattr(cfg, field) for field in fields},
    )


HELD_OUT = ("validation", "test")
"""The roles that stay in memory when the train split is streamed."""


@dataclass(frozen=True)
class TrainStream:
    """A streamed train split (`data.streaming`): its rows as the source holds them, and
    how a window of them becomes the task's fields."""

    rows: datasets.IterableDataset
    split: str
    columns: dict[str, str]
    """Each of the task's fields -> the column it is read from."""
    identity: dict[str, str | None]
    """What names the data (for the checkpoint's batch layout)."""

    def fields(self, rows: list[dict[str, object]]) -> datasets.Dataset:
        return columns_of(rows, split=self.split, columns=self.columns)

    def sample(self, tokenizer: TokenizerConfig) -> datasets.Dataset:
        """The first `tokenizer.train_examples` rows, as fields: what the tokenizer learns."""
        count = tokenizer.train_examples or DEFAULT_TOKENIZER_EXAMPLES
        rows = first_rows(self.rows, count, identity=self.identity)
        if not rows:
            raise unreadable(self.identity, "its start", ValueError("it holds no rows"))
        log.info(
            "tokenizer: learned from the first %d examples of the streamed train split "
            "(tokenizer.train_examples=%s)",
            len(rows),
            tokenizer.train_examples,
        )
        return self.fields(rows)


def open_train_stream(
    cfg: DataConfig, *, seed: int, fields: Sequence[str] = PAIR_COLUMNS
) -> TrainStream:
    """The train split of `cfg` as a stream; a built-in dataset's generated split is read
    through the same path (`to_iterable_dataset`)."""
    if cfg.builtin is not None:
        train = _builtin_splits(cfg, seed=seed)["train"].select_columns(list(fields))
        return TrainStream(
            rows=train.to_iterable_dataset(),
            split="train",
            columns={field: field for field in fields},
            identity={"builtin": cfg.builtin},
        )
    assert cfg.path is not None
    columns = {field: getattr(cfg, field) for field in fields}
    split = cfg.splits.train
    rows = load_stream(
        path=cfg.path,
        name=cfg.name,
        data_files=asdict(cfg.data_files),
        split=split,
        columns=columns,
    )
    return TrainStream(
        rows=rows,
        split=split,
        columns=columns,
        identity={"path": cfg.path, "name": cfg.name, "data_files.train": cfg.data_files.train},
    )


def tokenizer_examples(train: datasets.Dataset, tokenizer: TokenizerConfig) -> datasets.Dataset:
    """The examples of an in-memory train split the tokenizer learns from."""
    count = tokenizer.train_examples
    if count is None or count >= len(train):
        return train
    log.info("tokenizer: learned from the first %d of %d train examples", count, len(train))
    return train.select(range(count))


def _builtin_splits(cfg: DataConfig, *, seed: int) -> datasets.DatasetDict:
    assert cfg.builtin is not None
    return builtin_dataset(cfg.builtin).make(cfg, seed)


def split_origin(data: DataConfig, role: str) -> str:
    """Where a split's examples come from, for errors: the built-in task, or the file or
    split name of the dataset."""
    if data.builtin is not None:
        return f"data.builtin={data.builtin!r}"
    file = getattr(data.data_files, role, None)
    if file is not None:
        return f"data.data_files.{role}={file!r}"
    return f"data.path={data.path!r}, split {getattr(data.splits, role)!r}"


def _require_usable_examples(train: datasets.Dataset, data: DataConfig) -> None:
    """The tokenizer is trained on the train split before cleaning: refuse one whose
    examples all have an empty source or target, naming the columns."""
    for batch in train.select_columns(["source", "target"]).iter(batch_size=1024):
        if any(
            (source or "").strip() and (target or "").strip()
            for source, target in zip(batch["source"], batch["target"], strict=True)
        ):
            return
    where = (
        f"data.builtin={data.builtin!r}"
        if data.builtin
        else f"data.data_files.train={data.data_files.train!r}"
    )
    raise ValueError(
        f"the train split ({where}) has no example with both a non-empty "
        f"source (data.source={data.source!r}) and target (data.target={data.target!r})"
    )


def prepare_data(
    data: DataConfig,
    tokenizer: TokenizerConfig,
    *,
    length_limits: tuple[int, int],
    seed: int,
    tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
    stream: TrainStream | None = None,
) -> PreparedPairs:
    """`length_limits`: the longest source and target, in tokens, that are kept whole.
    `tokenizers`: the (source, target) pair to use, such as a resumed checkpoint's; by
    default they are trained on the train split (or found in the tokenizer cache).
    `stream`: the streamed train split; the result then holds the held-out splits only,
    and the tokenizers learn from the stream's first examples."""
    if tokenizers is None:
        check_cache_dir(tokenizer.cache_dir)
    if stream is None:
        raw = load_raw_splits(data, seed=seed)
        _require_usable_examples(raw["train"], data)
    else:
        raw = load_raw_splits(data, seed=seed, roles=HELD_OUT)
    if tokenizers is None:
        train = (
            tokenizer_examples(raw["train"], tokenizer)
            if stream is None
            else stream.sample(tokenizer)
        )
        if stream is not None:
            _require_usable_examples(train, data)
        cache_dir = Path(tokenizer.cache_dir)
        try:
            tokenizers = build_tokenizers(
                train,
                shared=tokenizer.shared,
                model_type=tokenizer.model_type,
                source_model_type=tokenizer.source_model_type,
                vocab_size=tokenizer.vocab_size,
                character_coverage=tokenizer.character_coverage,
                cache_dir=cache_dir,
            )
        except OSError as error:
            inside = error.filename is not None and Path(
                os.path.abspath(error.filename)
            ).is_relative_to(os.path.abspath(cache_dir))
            if not inside:
                raise
            raise OSError(
                f"tokenizer.cache_dir={tokenizer.cache_dir!r}: the trained tokenizer cannot "
                f"be cached there ({error.strerror}: {error.filename}); set "
                "tokenizer.cache_dir to a writable directory"
            ) from error
    source_tokenizer, target_tokenizer = tokenizers
    tokenized = tokenize_splits(raw, source_tokenizer, target_tokenizer)
    splits, reports = {}, {}
    for role, split in tokenized.items():
        cleaned, report = clean_role(split, role, data=data, length_limits=length_limits)
        if len(cleaned) == 0:
            raise ValueError(
                f"the {role} split has no usable example left ({report}); check data.source="
                f"{data.source!r}, data.target={data.target!r} and data.max_*_len"
            )
        splits[role], reports[role] = cleaned, report
    return PreparedPairs(
        splits=datasets.DatasetDict(splits),
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        reports=reports,
    )


def check_cache_dir(cache_dir: str) -> None:
    """Before any data is read: a tokenizer cache that does not exist yet must be
    creatable. One that exists may be read-only (a shared cache, filled beforehand); if it
    lacks this data's tokenizer, caching it fails, naming the setting as well."""
    path = Path(cache_dir)
    if path.is_dir():
        return
    problem = directory_problem(path)
    if problem is not None:
        raise OSError(
            f"tokenizer.cache_dir={cache_dir!r} ({path.absolute()}): {problem}; set "
            "tokenizer.cache_dir to a writable directory"
        )


def clean_role(
    split: datasets.Dataset, role: str, *, data: DataConfig, length_limits: tuple[int, int]
) -> tuple[datasets.Dataset, CleanReport]:
    """Drops empty examples; over-long ones of the train split are dropped or truncated as
    `data.overlong` says, those of a held-out split always truncated, so that every
    example is scored (against its whole reference: the `target` text is kept)."""
    cleaned, report = clean_split(
        split,
        max_source_len=length_limits[0],
        max_target_len=length_limits[1],
        overlong="truncate" if role != "train" else data.overlong,  # type: ignore[arg-type]
    )
    log.info("%s split: %s", role, report)
    unscored = report.total - report.kept
    if role != "train" and unscored:
        log.warning(
            "%d of %d %s examples are empty (no source or no target text) and are not "
            "scored: the %s figures cover the other %d",
            unscored,
            report.total,
            role,
            role,
            report.kept,
        )
    if role != "train" and report.truncated:
        log.warning(
            "%d %s example(s) are longer than the model takes (%s); they are "
            "truncated, so their outputs can hardly match their references",
            report.truncated,
            role,
            report.limits,
        )
    return cleaned, report
