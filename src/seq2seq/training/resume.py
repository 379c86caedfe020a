"""The resume policy: where a run continues from, what it refuses, and when it is done.

`trainer.resume=auto` continues the latest checkpoint in the run dir, `<file.pt>` (or
`<step_N.dcp>`) or `<run dir>` another one. What protects data is refused before anything is
written: a fresh run over an earlier run's checkpoints, a checkpoint of another model or (but
for a sharded one, which reshards) another number of processes, or of the other
`trainer.strategy`, later checkpoints that a continued run would prune, and a finished run
asked for with other settings (its result would be returned as theirs).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seq2seq.atomic import write_atomic
from seq2seq.config.schema import TrainConfig
from seq2seq.training.checkpoint import (
    AVERAGED_KEY,
    CheckpointManager,
    checkpoint_paths,
    load_checkpoint,
)
from seq2seq.training.config_diff import (
    RESUME_SETTINGS,
    check_same_ema,
    check_same_model,
    check_same_result,
)
from seq2seq.training.sharded_checkpoint import SHARDED_KEY, copy_sharded, is_sharded_checkpoint
from seq2seq.training.trainer import Trainer

log = logging.getLogger("seq2seq.train")

RESUME_LATEST = ("auto", "true", "True")
RESUME_NEVER = ("false", "False", "")
FINISHED = ("max_steps", "max_epochs", "max_time", "early_stopping")
"""The ways a run ends done (a signal or a fault leaves it to continue)."""
# The setting behind each way of finishing other than max_steps (its step is in metrics.json).
LIMIT_SETTINGS = {"max_epochs": "max_epochs", "max_time": "max_time", "early_stopping": "patience"}
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "trainer")
"""What a checkpoint needs besides the weights to be resumed from: a checkpoint without it
(an average of checkpoints, a weights-only file) can be decoded but not resumed."""
BATCH_LAYOUT_KEY = "batch_layout"


CORRUPT_SUFFIX = ".corrupt"
"""A corrupt checkpoint after the one a run continues from is kept under this suffix, out
of the way of pruning and of trainer.resume=auto."""


@dataclass
class ResumePoint:
    """The checkpoint a run continues from."""

    path: Path
    checkpoint: dict[str, Any]
    corrupt_later: list[Path] = field(default_factory=list)
    """Corrupt checkpoints of later steps in the run's checkpoints/, set aside when the
    run's files are written (`set_aside_corrupt`)."""

    @property
    def step(self) -> int:
        return int(self.checkpoint["trainer"]["step"])


def resume_path(resume: str | None, checkpoints: CheckpointManager) -> Path | None:
    """The checkpoint `trainer.resume` points at, or None to start fresh."""
    if resume is None or resume in RESUME_NEVER:
        return None
    if resume in RESUME_LATEST:
        latest = checkpoints.latest()
        if latest is None:
            log.info(
                "trainer.resume=%s: no checkpoint in %s yet, starting fresh",
                resume,
                checkpoints.directory,
            )
        return latest
    path = Path(resume)
    if is_sharded_checkpoint(path):
        return path
    if path.is_dir():  # a run dir (or its checkpoints/): its latest step checkpoint
        found = checkpoint_paths(path / "checkpoints") or checkpoint_paths(path)
        if not found:
            raise FileNotFoundError(
                f"trainer.resume={resume!r}: a directory with no step checkpoint in it or in "
                "its checkpoints/; use auto, a run dir, or a .pt file"
            )
        return found[-1]
    if not path.is_file():
        raise FileNotFoundError(
            f"trainer.resume={resume!r}: no such checkpoint file; use auto, a run dir, or a "
            ".pt file"
        )
    return path


def check_resumable(
    checkpoint: Mapping[str, Any], source: Path, *, world_size: int, sharded: bool = False
) -> None:
    """One clear error, before anything is built, for a checkpoint with no training state,
    one of the other `trainer.strategy` (`sharded`: this run's is fsdp), or one written by
    another number of processes (each restores its own RNG states), but for a sharded one."""
    if is_sharded_checkpoint(source) != sharded:
        written, now = ("fsdp", "ddp") if is_sharded_checkpoint(source) else ("ddp", "fsdp")
        raise ValueError(
            f"trainer.resume: {source} was written by a trainer.strategy={written} run but this "
            f"run has trainer.strategy={now}; resume with trainer.strategy={written}"
        )
    stored = [*checkpoint, *checkpoint.get(SHARDED_KEY, [])]
    missing = [key for key in TRAINING_STATE if key not in stored]
    if missing:
        what = (
            "an average of checkpoints (seq2seq-average), for generation only"
            if AVERAGED_KEY in checkpoint
            else "not a training checkpoint"
        )
        raise ValueError(
            f"trainer.resume: {source} is {what}; it has no optimizer state to resume from "
            f"(missing {missing}). Resume from a step_*.pt checkpoint"
        )
    written_by = len(checkpoint["rng"])
    if written_by != world_size and not sharded:
        raise ValueError(
            f"trainer.resume: {source} was written by {written_by} processes but this run has "
            f"{world_size}; resume with the same number of processes"
        )


def _intact(path: Path) -> bool:
    try:
        load_checkpoint(path, mmap=True)
    except ValueError:
        return False
    return True


def _newest_intact_before(corrupt: Path) -> Path | None:
    """The newest step checkpoint beside `corrupt` that loads, of an earlier step."""
    earlier = [path for path in checkpoint_paths(corrupt.parent) if path.name < corrupt.name]
    return next((path for path in reversed(earlier) if _intact(path)), None)


def _load_or_advise(start_from: Path, checkpoints: CheckpointManager) -> dict[str, Any]:
    """The checkpoint to resume from; when it is corrupt, the error names the newest
    intact one beside it and the setting that continues from there."""
    try:
        # A sharded checkpoint's tensors are not read whole on every rank.
        return load_checkpoint(start_from, mmap=is_sharded_checkpoint(start_from))
    except ValueError as error:
        if "truncated or corrupt" not in str(error):
            raise
        intact = _newest_intact_before(start_from)
        if intact is None:
            advice = (
                f"no earlier checkpoint in {start_from.parent} loads either: train afresh into "
                "another hydra.run.dir"
            )
        else:
            same_dir = start_from.parent.resolve() == checkpoints.directory.resolve()
            where = " and the same hydra.run.dir" if same_dir else ""
            advice = (
                f"the newest intact checkpoint is {intact}: continue from it with "
                f"trainer.resume={intact}{where} (the corrupt later ones are kept as "
                f"*{CORRUPT_SUFFIX})"
            )
        raise ValueError(f"{error}; {advice}") from error


def _check_nothing_after(start_from: Path, step: int, checkpoints: CheckpointManager) -> list[Path]:
    """A run continued from `start_from` writes into `checkpoints`; refuse if that holds
    checkpoints it did not lead to (of later steps, or of another run), which keep_last
    would prune, best.pt would be mistaken for, or trainer.resume=auto would pick up.
    Later checkpoints of the run that are corrupt are returned, to be set aside: nothing
    can continue from them."""
    inside = start_from.resolve().parent == checkpoints.directory.resolve()
    others = checkpoints.written_after(step) if inside else checkpoints.existing()
    corrupt = [path for path in others if not _intact(path)] if inside else []
    others = [path for path in others if path not in corrupt]
    if others:
        whose = "later steps of that run" if inside else "another run"
        raise ValueError(
            f"trainer.resume={str(start_from)!r} continues step {step}, but "
            f"{checkpoints.directory} holds checkpoints of {whose} "
            f"({', '.join(path.name for path in others)}); move them out of the way first, "
            "or continue the latest with trainer.resume=auto"
        )
    return corrupt


def resume_point(
    resume: str | None, checkpoints: CheckpointManager, *, world_size: int, config_text: str
) -> ResumePoint | None:
    """Where a run with `trainer.resume=resume` continues, checked before anything is
    built; None to start fresh (refused when that would overwrite an earlier run's
    checkpoints). `config_text`: the run's resolved config, which must build the same model.
    A sharded checkpoint's `checkpoint` is its `state.pt`: every rank loads its own shards of
    the weights and the optimizer's state later (`Trainer.load_state_dict`)."""
    start_from = resume_path(resume, checkpoints)
    earlier = checkpoints.existing()
    if start_from is None:
        if earlier:
            # A fresh run would overwrite best.pt and prune the earlier run's checkpoints.
            names = ", ".join(path.name for path in earlier)
            if resume in RESUME_LATEST:  # only best.pt: nothing to continue from
                raise ValueError(
                    f"{checkpoints.directory} holds {names} but no step checkpoint to continue "
                    "from; move it out of the way, or train into another hydra.run.dir"
                )
            raise ValueError(
                f"{checkpoints.directory} already holds checkpoints of an earlier run "
                f"({names}); continue it with trainer.resume=auto, or train into another "
                "hydra.run.dir"
            )
        return None
    checkpoint = _load_or_advise(start_from, checkpoints)
    check_resumable(checkpoint, start_from, world_size=world_size, sharded=checkpoints.sharded)
    point = ResumePoint(start_from, checkpoint)
    point.corrupt_later = _check_nothing_after(start_from, point.step, checkpoints)
    check_same_model(checkpoint["config"], config_text, source=start_from, also=RESUME_SETTINGS)
    check_same_ema(checkpoint["config"], config_text, source=start_from)
    return point


def set_aside_corrupt(point: ResumePoint) -> None:
    """Rename the corrupt later checkpoints of a resumed run (`<name>.corrupt`), where the
    run will neither prune them nor resume from them; kept, for whoever wants to look."""
    for path in point.corrupt_later:
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        path.replace(aside)
        log.warning(
            "%s is corrupt and the run continues from %s: kept as %s", path, point.path, aside
        )


def adopt_best(point: ResumePoint, checkpoints: CheckpointManager) -> None:
    """A run continued from another run's checkpoint copies that run's best.pt along, so
    the best it carries on from (which it tests at the end if nothing beats it) is a file
    in its own dir. Only a best.pt of the carried best step is taken."""
    best_step = point.checkpoint["trainer"].get("best_step")
    source, target = point.path.parent / checkpoints.best.name, checkpoints.best
    if best_step is None or target.exists() or not source.exists():
        return
    if int(load_checkpoint(source, mmap=True)["trainer"]["step"]) != best_step:
        log.warning(
            "%s is not the best checkpoint (step %d) that %s carries on from; not copied",
            source,
            best_step,
            point.path,
        )
        return
    checkpoints.directory.mkdir(parents=True, exist_ok=True)
    if is_sharded_checkpoint(source):
        copy_sharded(source, target)
        log.info("copied %s (step %d) to %s", source, best_step, target)
        return
    with source.open("rb") as best:
        write_atomic(target, lambda handle: shutil.copyfileobj(best, handle))
    log.info("copied %s (step %d) to %s", source, best_step, target)


def restart_epoch_if_rebatched(
    saved: Mapping[str, Any] | None, current: Mapping[str, Any], trainer: Trainer
) -> None:
    """The saved data position counts batches of the saved layout. Resumed with another
    one (data.max_tokens, seed, the data, the number of processes), that count would
    point into other batches: the epoch starts again in the new order instead, and says so."""
    state = trainer.state
    if saved is None or dict(saved) == dict(current) or state.epoch_batches == 0:
        return
    changes = ", ".join(
        f"{key} {saved.get(key)!r} -> {value!r}"
        for key, value in current.items()
        if saved.get(key) != value
    )
    log.warning(
        "the training batches differ from the checkpoint's (%s): epoch %d starts again from "
        "its first batch in the new order, so some of its examples are seen twice",
        changes,
        state.epoch,
    )
    state.epoch_batches = 0


def finished_objective(run_dir: Path, cfg: TrainConfig, config_text: str) -> float | None:
    """The saved objective of a run in `run_dir` that already finished, if it did.

    A raised limit (`trainer.max_steps`, or the max_epochs or patience that ended it)
    trains on instead. A finished run asked for with other settings that its result
    depends on (the model, data, optimizer, schedule, decoding ...) is an error."""
    path = run_dir / "metrics.json"
    if cfg.trainer.resume not in RESUME_LATEST or not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    stopped = metrics.get("stopped")
    if stopped not in FINISHED:
        return None
    if stopped == "max_steps" and metrics.get("step", 0) < cfg.trainer.max_steps:
        return None  # trainer.max_steps raised: train on to the new limit
    saved_config = run_dir / "config.yaml"
    if saved_config.is_file():
        saved_text = saved_config.read_text(encoding="utf-8")
        saved_trainer = (yaml.safe_load(saved_text) or {}).get("trainer", {})
        setting = LIMIT_SETTINGS.get(stopped)
        if setting is not None and saved_trainer.get(setting) != getattr(cfg.trainer, setting):
            return None  # the limit that ended it changed: train on to the new one
        check_same_result(saved_text, config_text, source=run_dir)
    best = metrics.get("best", {}).get(cfg.trainer.monitor)
    return float("nan") if best is None else float(best)
