"""`seq2seq-train`: compose the config, prepare data and tokenizers, build, train, test.

    seq2seq-train experiment=toy_reverse
    seq2seq-train experiment=toy_reverse model.encoder.layers=4 norm=rezero activation=swiglu
    seq2seq-train -m norm=layernorm,rezero,prescalenorm      # a Hydra multirun sweep

`python -m seq2seq.cli.train ...` is the same program.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import hydra
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.atomic import write_atomic, write_json_atomic, write_text_atomic
from seq2seq.cli.command_line import typed_overrides
from seq2seq.cli.errors import USAGE_ERRORS, SweepJobFailed, run_cli, usage_errors
from seq2seq.cli.prepare import PreparedData, evaluation_set, prepare_data
from seq2seq.cli.sweep_check import check_sweep
from seq2seq.cli.validate import generation_settings, length_limits, validate_config
from seq2seq.config.keys import check_known_keys
from seq2seq.config.schema import TrainConfig
from seq2seq.config.store import register_configs
from seq2seq.data.batching import Batch, TokenBatchSampler, make_dataloader
from seq2seq.data.lengths import token_lengths
from seq2seq.evaluation import get_metric
from seq2seq.model import build_model, linear_settings, uses_linear_attention
from seq2seq.model.seq2seq import EncoderDecoderTransformer
from seq2seq.tokenizer.sentencepiece import BOS_ID, EOS_ID, PAD_ID
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.tokenizer.stored import stored_tokenizers, tokenizer_tensors
from seq2seq.training.checkpoint import (
    BEST_NAME,
    CheckpointManager,
    checkpoint_paths,
    load_checkpoint,
    strip_prefixes,
)
from seq2seq.training.config_diff import RESUME_SETTINGS, check_same_model, check_same_result
from seq2seq.training.devices import resolve_device
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.evaluator import Evaluator
from seq2seq.training.logger import RunLogger
from seq2seq.training.optim import build_optimizer
from seq2seq.training.rng import seed_everything
from seq2seq.training.schedule import build_scheduler
from seq2seq.training.signals import StopRequest, graceful_stop
from seq2seq.training.trainer import (
    PRECISIONS,
    Monitor,
    Trainer,
    check_precision,
    check_resumable,
    use_tf32,
)

log = logging.getLogger("seq2seq.train")

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
RESUME_LATEST = ("auto", "true", "True")
RESUME_NEVER = ("false", "False", "")
FINISHED = ("max_steps", "max_epochs", "early_stopping")
# The setting behind each way of finishing other than max_steps (its step is in metrics.json).
LIMIT_SETTINGS = {"max_epochs": "max_epochs", "early_stopping": "patience"}

register_configs()


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


def _check_nothing_after(start_from: Path, step: int, checkpoints: CheckpointManager) -> None:
    """A run continued from `start_from` writes into `checkpoints`; refuse if that holds
    checkpoints it did not lead to (of later steps, or of another run), which keep_last
    would prune, best.pt would be mistaken for, or trainer.resume=auto would pick up."""
    inside = start_from.resolve().parent == checkpoints.directory.resolve()
    others = checkpoints.written_after(step) if inside else checkpoints.existing()
    if others:
        whose = "later steps of that run" if inside else "another run"
        raise ValueError(
            f"trainer.resume={str(start_from)!r} continues step {step}, but "
            f"{checkpoints.directory} holds checkpoints of {whose} "
            f"({', '.join(path.name for path in others)}); move them out of the way first, "
            "or continue the latest with trainer.resume=auto"
        )


BATCH_LAYOUT_KEY = "batch_layout"


def _restart_epoch_if_rebatched(
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


def _adopt_best(start_from: Path, best_step: int | None, checkpoints: CheckpointManager) -> None:
    """A run continued from another run's checkpoint copies that run's best.pt along, so
    the best it carries on from (which it tests at the end if nothing beats it) is a file
    in its own dir. Only a best.pt of the carried best step is taken."""
    source, target = start_from.parent / BEST_NAME, checkpoints.directory / BEST_NAME
    if best_step is None or target.exists() or not source.is_file():
        return
    if int(load_checkpoint(source, mmap=True)["trainer"]["step"]) != best_step:
        log.warning(
            "%s is not the best checkpoint (step %d) that %s carries on from; not copied",
            source,
            best_step,
            start_from,
        )
        return
    checkpoints.directory.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as best:
        write_atomic(target, lambda handle: shutil.copyfileobj(best, handle))
    log.info("copied %s (step %d) to %s", source, best_step, target)


def _batches(sampler: TokenBatchSampler, loader: Any) -> Callable[[int, int], Iterator[Batch]]:
    def batches(epoch: int, start: int) -> Iterator[Batch]:
        sampler.load_state_dict({"epoch": epoch, "position": start})
        if start < len(sampler):
            yield from loader

    return batches


def _monitor(name: str) -> Monitor:
    if name in ("loss", "ppl"):
        return Monitor(name, higher_is_better=False)
    return Monitor(name, higher_is_better=get_metric(name).higher_is_better)


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


def checked_config(cfg_node: DictConfig, command_line: Sequence[str] = ()) -> TrainConfig:
    """The typed config, once every key is known and every value passes `validate_config`
    (`command_line`: the overrides the user typed, for the checks only they can fail)."""
    check_known_keys(cfg_node)
    cfg: TrainConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    validate_config(cfg, command_line=command_line)
    return cfg


@dataclass(frozen=True)
class Outcome:
    """What one call of `run_training` did."""

    objective: float
    """The best value of `trainer.monitor` (nan before the first validation)."""
    trained: bool
    """False when `run_dir` held a finished run, whose saved result was returned."""


def train(
    cfg_node: DictConfig,
    run_dir: Path,
    *,
    command_line: Sequence[str] = (),
    hydra_files: Mapping[str, str] | None = None,
) -> float:
    """Run one training job into `run_dir`; returns the best value of `trainer.monitor`."""
    return run_training(
        cfg_node, run_dir, command_line=command_line, hydra_files=hydra_files
    ).objective


def run_training(
    cfg_node: DictConfig,
    run_dir: Path,
    *,
    command_line: Sequence[str] = (),
    hydra_files: Mapping[str, str] | None = None,
) -> Outcome:
    """Run one training job into `run_dir`, or return the saved result of a finished one.

    Under `torchrun` every rank calls this; they share rank 0's run dir. `command_line`:
    the overrides the user typed, for the checks that only they can fail. `hydra_files`:
    Hydra's record of the launch, written to `.hydra/` with the run's own files once the
    run is accepted (Hydra's own `output_subdir` is off: it wrote before any check and
    replaced an earlier run's record with a refused command's).
    """
    cfg = checked_config(cfg_node, command_line)
    distributed = init_distributed()
    try:
        run_dir = Path(distributed.broadcast(str(run_dir)))
        done = finished_objective(run_dir, cfg, OmegaConf.to_yaml(cfg_node, resolve=True))
        if done is not None:
            log.info("%s already finished (metrics.json); not training it again", run_dir)
            return Outcome(done, trained=False)
        return Outcome(_train(cfg, cfg_node, run_dir, distributed, hydra_files or {}), trained=True)
    finally:
        shutdown_distributed(distributed)


def _train(
    cfg: TrainConfig,
    cfg_node: DictConfig,
    run_dir: Path,
    distributed: Distributed,
    hydra_files: Mapping[str, str],
) -> float:
    config_text = OmegaConf.to_yaml(cfg_node, resolve=True)
    device = resolve_device(
        cfg.trainer.device, field="trainer.device", local_rank=distributed.local_rank
    )
    check_precision(cfg.trainer.precision, device)
    use_tf32(device, cfg.trainer.tf32)
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    checkpoints = CheckpointManager(run_dir / "checkpoints", keep_last=cfg.trainer.keep_last)
    start_from = resume_path(cfg.trainer.resume, checkpoints)
    earlier = checkpoints.existing()
    if start_from is None and earlier:
        # A fresh run would overwrite best.pt and prune the earlier run's checkpoints.
        names = ", ".join(path.name for path in earlier)
        if cfg.trainer.resume in RESUME_LATEST:  # only best.pt: nothing to continue from
            raise ValueError(
                f"{checkpoints.directory} holds {names} but no step checkpoint to continue "
                "from; move it out of the way, or train into another hydra.run.dir"
            )
        raise ValueError(
            f"{checkpoints.directory} already holds checkpoints of an earlier run "
            f"({names}); continue it with trainer.resume=auto, or train into another "
            "hydra.run.dir"
        )
    checkpoint = None
    stored = None
    if start_from is not None:
        checkpoint = load_checkpoint(start_from)
        check_resumable(checkpoint, start_from, world_size=distributed.world_size)
        _check_nothing_after(start_from, checkpoint["trainer"]["step"], checkpoints)
        check_same_model(checkpoint["config"], config_text, source=start_from, also=RESUME_SETTINGS)
        # The weights belong to these ids: a tokenizer retrained on changed data would
        # silently renumber them.
        stored = stored_tokenizers(checkpoint, start_from)

    seed_everything(cfg.seed)
    # Rank 0 trains (or finds) the tokenizers first; the others then read its cache.
    if not distributed.is_main:
        distributed.barrier()
    data = prepare_data(
        cfg.data, cfg.tokenizer, length_limits=length_limits(cfg), seed=cfg.seed, tokenizers=stored
    )
    if distributed.is_main:
        distributed.barrier()
    if "validation" not in data.splits:
        raise ValueError(
            "training needs a validation split: set data.splits.validation "
            "(and data.data_files.validation for local files)"
        )
    tokenizer = data.target_tokenizer
    model = build_model(
        cfg.model,
        src_vocab_size=data.source_tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        pad_id=PAD_ID,
        seed=cfg.seed,
    )
    if checkpoint is not None:
        model.load_state_dict(strip_prefixes(checkpoint["model"]))
    model.to(device)
    assert isinstance(model, EncoderDecoderTransformer)
    log.info(
        "model: %s parameters; device %s", f"{sum(p.numel() for p in model.parameters()):,}", device
    )

    sampler = TokenBatchSampler(
        *token_lengths(data.splits["train"]),
        max_tokens=cfg.data.max_tokens,
        seed=cfg.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
    )
    loader = make_dataloader(
        data.splits["train"],
        sampler=sampler,
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        num_workers=cfg.data.num_workers,
    )
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, max_steps=cfg.trainer.max_steps)
    autocast_dtype = PRECISIONS[cfg.trainer.precision]
    settings = generation_settings(cfg)

    def evaluator(split: str) -> Evaluator:
        return Evaluator(
            model=model,
            data=evaluation_set(data.splits[split], data.target_tokenizer),
            target_tokenizer=tokenizer,
            generation=settings,
            metrics=cfg.trainer.metrics,
            num_samples=cfg.trainer.num_samples,
            max_tokens=cfg.data.max_tokens,
            device=device,
            autocast_dtype=autocast_dtype,
            label_smoothing=cfg.trainer.label_smoothing,
        )

    # Written only now: a refused resume, bad data or a batch budget too small for the
    # data leaves the run's files as they were.
    if distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_text, run_dir / "config.yaml")
        write_files(run_dir / HYDRA_SUBDIR, hydra_files)
        data.source_tokenizer.save(run_dir / "tokenizer", "source")
        data.target_tokenizer.save(run_dir / "tokenizer", "target")
        if start_from is not None and checkpoint is not None:
            _adopt_best(start_from, checkpoint["trainer"].get("best_step"), checkpoints)
    resumed_step = 0 if checkpoint is None else int(checkpoint["trainer"]["step"])
    logger = RunLogger(run_dir, resumed_step=resumed_step) if distributed.is_main else None
    if logger is not None:
        # At the step it starts from: a resumed run's settings may differ (optim.lr, max_steps).
        logger.text("config", f"```yaml\n{config_text}\n```", resumed_step)
    # torch.compile wraps the module in an OptimizedModule, itself an nn.Module.
    trained = cast(nn.Module, torch.compile(model)) if cfg.trainer.compile else model
    if distributed.enabled:
        # FAVOR+ projections and positions are equal on every rank by construction.
        trained = DistributedDataParallel(
            trained,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    trainer = Trainer(
        model=trained,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=_batches(sampler, loader),
        evaluator=evaluator("validation"),
        monitor=_monitor(cfg.trainer.monitor),
        checkpoints=checkpoints,
        logger=logger,
        cfg=cfg.trainer,
        device=device,
        pad_id=PAD_ID,
        redraw_interval=linear_settings(cfg.model).redraw_interval
        if uses_linear_attention(cfg.model)
        else 0,
        checkpoint_extras={
            "config": config_text,
            BATCH_LAYOUT_KEY: sampler.layout(),
            TOKENIZER_KEY: tokenizer_tensors(data.source_tokenizer, data.target_tokenizer),
        },
        distributed=distributed,
    )
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint)
        _restart_epoch_if_rebatched(checkpoint.get(BATCH_LAYOUT_KEY), sampler.layout(), trainer)
        log.info("resumed from %s at step %d", start_from, trainer.state.step)

    try:
        # The handlers stay installed over the final outputs: a signal during the test
        # decoding waits for metrics.json instead of losing it.
        with graceful_stop() as stop:
            reason = trainer.fit(stop)
            log.info("training stopped: %s at step %d", reason, trainer.state.step)
            if logger is not None:
                results = _final_outputs(
                    trainer, evaluator, data, run_dir, checkpoints, reason, stop=stop
                )
                logger.hparams(OmegaConf.to_container(cfg_node, resolve=True), results)  # type: ignore[arg-type]
    finally:
        if logger is not None:
            logger.close()
    best = trainer.state.best_value
    return float("nan") if best is None else float(best)


def _final_outputs(
    trainer: Trainer,
    evaluator: Any,
    data: PreparedData,
    run_dir: Path,
    checkpoints: CheckpointManager,
    reason: str,
    *,
    stop: StopRequest,
) -> dict[str, float]:
    """metrics.json, and the test split decoded by the best checkpoint into predictions.txt.
    A signal that arrived after training ended (during the last validation or the test
    decoding) is recorded as `signal`: it was meant for the whole sweep."""
    state = trainer.state
    final = trainer.last_evaluation.figures if trainer.last_evaluation else {}
    summary: dict[str, Any] = {
        "stopped": reason,
        "step": state.step,
        "monitor": trainer.monitor.name,
        "best": {"step": state.best_step, trainer.monitor.name: state.best_value},
        "final_validation": final,
        "skipped_steps": state.skipped_steps,
        # The figures cover the kept examples: an over-long test example dropped is not scored.
        "data": {
            role: {**asdict(report), "kept": report.kept} for role, report in data.reports.items()
        },
    }
    hparam_metrics = {f"valid/{k}": v for k, v in final.items()}
    finished = reason in FINISHED
    if finished and "test" in data.splits:
        best_path = checkpoints.directory / BEST_NAME
        model = trainer.evaluator.model
        if best_path.is_file():
            model.load_state_dict(strip_prefixes(load_checkpoint(best_path)["model"]))
        elif state.best_step is not None and state.best_step != state.step:
            log.warning(
                "no %s of the best step %d: the test split is decoded by the model of step %d",
                best_path,
                state.best_step,
                state.step,
            )
        result = evaluator("test").evaluate(step=state.step)
        write_text_atomic("\n".join(result.predictions) + "\n", run_dir / "predictions.txt")
        summary["test"] = result.figures
        hparam_metrics.update({f"test/{k}": v for k, v in result.figures.items()})
        if trainer.logger is not None:
            trainer.logger.scalars({f"test/{k}": v for k, v in result.figures.items()}, state.step)
        log.info("test | %s", result.summary())
    if stop.requested and reason not in signal.Signals.__members__:
        summary["signal"] = stop.signal_name
    write_json_atomic(summary, run_dir / "metrics.json")
    return {k: float(v) for k, v in hparam_metrics.items() if not math.isnan(float(v))}


def _signal_status(run_dir: Path) -> int | None:
    """128 + the signal number when SIGTERM or SIGINT stopped the run in `run_dir` (it has
    checkpointed), as a shell reports a process ended by that signal; None otherwise."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    stopped = metrics.get("signal", metrics.get("stopped"))
    if isinstance(stopped, str) and stopped in signal.Signals.__members__:
        return 128 + signal.Signals[stopped].value
    return None


HYDRA_SUBDIR = ".hydra"
FAILURE_NAME = "failure.json"
"""What a failed sweep job leaves in its run dir: `{"stopped": "failed", "error": ...}`."""


def write_files(directory: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(text, directory / name)


def _hydra_record(cfg: DictConfig) -> dict[str, str]:
    """What Hydra's `output_subdir` would have written: the composed config, Hydra's own
    config and the overrides (scripts/summarize_sweep.py reads the last)."""
    hydra_node = HydraConfig.instance().cfg
    assert hydra_node is not None
    return {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "hydra.yaml": OmegaConf.to_yaml(hydra_node),
        "overrides.yaml": OmegaConf.to_yaml(HydraConfig.get().overrides.task),
    }


def _remove_if_empty(run_dir: Path) -> None:
    """Hydra makes the run dir before the job; a run refused at once leaves nothing."""
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    command_line = typed_overrides()
    record = _hydra_record(cfg)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            with usage_errors("seq2seq-train"):
                outcome = run_training(cfg, run_dir, command_line=command_line, hydra_files=record)
        except BaseException:
            _remove_if_empty(run_dir)
            raise
        # Stopped by a signal, the run is not done: a non-zero status keeps
        # `seq2seq-train ... && next-step` and job schedulers from taking it as finished.
        status = _signal_status(run_dir) if outcome.trained else None
        if status is not None:
            raise SystemExit(status)
        return outcome.objective
    # A sweep job's dir shows up in scripts/summarize_sweep.py from the start (by its
    # .hydra/overrides.yaml), even if the job is killed while preparing data; an earlier
    # run's record there is replaced only once this job is accepted.
    if not (run_dir / HYDRA_SUBDIR).exists():
        write_files(run_dir / HYDRA_SUBDIR, record)
    # A failing job leaves failure.json and re-raises: Hydra's launchers run the other
    # jobs first, Optuna marks the trial failed.
    try:
        outcome = run_training(cfg, run_dir, command_line=command_line, hydra_files=record)
        objective = outcome.objective
        # The signal was meant for the whole sweep: end the process rather than let the
        # launcher start the next job; `trainer.resume=auto` continues the sweep.
        status = _signal_status(run_dir) if outcome.trained else None
        if status is not None:
            log.warning("ending the sweep after job %s, stopped by a signal", run_dir)
            raise SystemExit(status)
        # An earlier attempt's failure (a refused config) is no longer this job's state.
        (run_dir / FAILURE_NAME).unlink(missing_ok=True)
        if math.isnan(objective):
            raise RuntimeError(
                f"run {run_dir} has no finite {cfg.trainer.monitor}: it stopped before its "
                "first validation, or every validation gave nan"
            )
        return objective
    except Exception as error:
        write_json_atomic(
            {"stopped": "failed", "error": f"{type(error).__name__}: {error}"},
            run_dir / FAILURE_NAME,
        )
        if isinstance(error, USAGE_ERRORS):
            raise SweepJobFailed(f"sweep job {run_dir} failed: {error}") from error
        raise


def _check_direction(launch: DictConfig) -> None:
    """An Optuna search must seek the best of what seq2seq-train returns: the best
    value of trainer.monitor."""
    direction = launch.hydra.sweeper.get("direction")
    if not isinstance(direction, str):  # the basic sweeper, or a multi-objective search
        return
    monitor = launch.trainer.monitor
    wanted = "maximize" if _monitor(monitor).higher_is_better else "minimize"
    if direction != wanted:
        raise ValueError(
            f"hydra.sweeper.direction={direction!r}, but the search optimizes "
            f"trainer.monitor={monitor!r}, which is better {'higher' if wanted == 'maximize' else 'lower'}: "
            f"set hydra.sweeper.direction={wanted}"
        )


def _check_sweep_jobs(argv: list[str]) -> None:
    """Every job of a grid sweep is checked before the first one trains, and a search's
    direction against the figure it optimizes."""
    check_sweep(CONFIG_DIR, "train", argv, checked_config, check_launch=_check_direction)


def main() -> None:
    """`seq2seq-train`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-train", _hydra_main, before=_check_sweep_jobs)


if __name__ == "__main__":
    main()
