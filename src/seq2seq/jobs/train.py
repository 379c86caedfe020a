"""One training run from a composed config: check it, assemble a trainer, train, test.

`run_training` is what `seq2seq-train` calls for each job (every rank under `torchrun`);
`assemble` puts the pieces together in named steps (device, resume point, the task's data
and model, batches, optimizer and schedule, the run dir's files, wrappers), and `finish`
writes the final outputs. Nothing here asks what kind of training it is: the task does.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import signal
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from seq2seq.atomic import remove_orphan_temporaries, write_json_atomic, write_text_atomic
from seq2seq.config.checks import check_precision
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import ParallelStrategy
from seq2seq.jobs.checks import checked_task
from seq2seq.tasks import PreparedData, Task
from seq2seq.training.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    strip_prefixes,
    weights_for_inference,
)
from seq2seq.training.devices import cpu_threads, resolve_device
from seq2seq.training.distributed import Distributed, init_distributed, shutdown_distributed
from seq2seq.training.fsdp import shard
from seq2seq.training.logger import RunLogger
from seq2seq.training.optim import build_optimizer
from seq2seq.training.precision import PRECISIONS, use_tf32
from seq2seq.training.resume import (
    BATCH_LAYOUT_KEY,
    FINISHED,
    ResumePoint,
    adopt_best,
    finished_objective,
    restart_epoch_if_rebatched,
    resume_point,
    set_aside_corrupt,
)
from seq2seq.training.rng import seed_everything
from seq2seq.training.run_files import (
    CONFIG_NAME,
    HYDRA_SUBDIR,
    METRICS_NAME,
    PREDICTIONS_NAME,
    write_files,
)
from seq2seq.training.run_lock import run_dir_lock
from seq2seq.training.schedule import build_scheduler
from seq2seq.training.signals import StopRequest, graceful_stop
from seq2seq.training.state import Monitor
from seq2seq.training.trainer import Trainer
from seq2seq.training.write_fault import WriteFault

log = logging.getLogger("seq2seq.train")


def monitor(cfg: TrainConfig, kind: type[Task]) -> Monitor:
    """The figure that picks the best checkpoint, and which way is better."""
    figures = kind.figures(cfg)
    return Monitor(cfg.trainer.monitor, higher_is_better=figures[cfg.trainer.monitor])


@dataclass(frozen=True)
class Outcome:
    """What one call of `run_training` did."""

    objective: float
    """The best value of `trainer.monitor` (nan before the first validation)."""
    trained: bool
    """False when `run_dir` held a finished run, whose saved result was returned."""
    fault: str | None = None
    """Why training stopped on a fault (`stopped: nonfinite` in metrics.json), in one line;
    the CLI exits non-zero on it."""


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
    run is accepted (so a refused command never replaces an earlier run's record).
    """
    cfg, kind = checked_task(cfg_node, command_line)
    # Rank 0's lock, before anything is read or written: one writer per run dir.
    with run_dir_lock(run_dir):
        distributed = init_distributed()
        threads = torch.get_num_threads()  # `trainer.threads` is this run's, not the caller's
        try:
            run_dir = Path(distributed.broadcast(str(run_dir)))
            config_text = OmegaConf.to_yaml(cfg_node, resolve=True)
            done = finished_objective(run_dir, cfg, config_text)
            if done is not None:
                log.info("%s already finished (metrics.json); not training it again", run_dir)
                return Outcome(done, trained=False)
            run = assemble(cfg, kind, config_text, run_dir, distributed, hydra_files or {})
            hparams = OmegaConf.to_container(cfg_node, resolve=True, enum_to_str=True)
            try:
                best = run.train(hparams)  # type: ignore[arg-type]
                fault = run.trainer.fault
            finally:
                # DDP's reducer holds the process group: freed while the group is alive, or
                # the group's destructor (under the GIL) can wait forever on a gloo worker
                # thread that waits for the GIL.
                del run
                gc.collect()
            return Outcome(best, trained=True, fault=None if fault is None else str(fault))
        finally:
            torch.set_num_threads(threads)
            shutdown_distributed(distributed)


@dataclass
class AssembledRun:
    """Everything a run needs once assembled; `train` runs it to its end."""

    cfg: TrainConfig
    run_dir: Path
    task: Task
    data: PreparedData
    trainer: Trainer
    checkpoints: CheckpointManager
    logger: RunLogger | None
    device: torch.device

    def train(self, hparams: dict[str, Any]) -> float:
        """Train, then write the final outputs (rank 0); the best value of the monitor."""
        trainer, logger = self.trainer, self.logger
        try:
            # The handlers stay installed over the final outputs: a signal during the test
            # decoding waits for metrics.json instead of losing it.
            with graceful_stop(last_checkpoint=self.checkpoints.latest) as stop:
                reason = trainer.fit(stop)
                log.info("training stopped: %s at step %d", reason, trainer.state.step)
                if logger is not None:
                    try:
                        results = self.finish(reason, stop=stop)
                    except OSError as error:
                        self._final_files_fault(error)
                    else:
                        logger.hparams(hparams, results)
        finally:
            if logger is not None:
                logger.close()
        best = trainer.state.best_value
        return float("nan") if best is None else float(best)

    def finish(self, reason: str, *, stop: StopRequest) -> dict[str, float]:
        """metrics.json, and the test split evaluated by the best checkpoint (its
        predictions in predictions.txt). A signal that arrived after training ended (during
        the last validation or the test) is recorded as `signal`: it was meant for the whole
        sweep. Returns the figures for the HParams table."""
        trainer, state = self.trainer, self.trainer.state
        final = trainer.last_evaluation.figures if trainer.last_evaluation else {}
        summary: dict[str, Any] = {
            "stopped": reason,
            "step": state.step,
            "monitor": trainer.monitor.name,
            "best": {"step": state.best_step, trainer.monitor.name: state.best_value},
            "final_validation": final,
            "skipped_steps": state.skipped_steps,
            # The figures cover the kept examples: an empty test example is not scored.
            "data": {
                role: {**asdict(report), "kept": report.kept}
                for role, report in self.data.reports.items()
            },
        }
        if trainer.fault is not None:
            summary[reason] = trainer.fault.record()
        hparam_metrics = {f"valid/{k}": v for k, v in final.items()}
        if reason in FINISHED and "test" in self.data.splits:
            result = self._test()
            write_text_atomic("\n".join(result.predictions) + "\n", self.run_dir / PREDICTIONS_NAME)
            summary["test"] = result.figures
            test_data = self.data.reports.get("test")
            if test_data is not None:
                # Beside the figures: the test examples they do not cover (empty ones).
                summary["test_unscored"] = test_data.total - test_data.kept
            if result.details:
                summary["test_details"] = result.details
            hparam_metrics.update({f"test/{k}": v for k, v in result.figures.items()})
            if self.logger is not None:
                self.logger.scalars({f"test/{k}": v for k, v in result.figures.items()}, state.step)
            log.info("test | %s", result.summary())
        if stop.requested and reason not in signal.Signals.__members__:
            summary["signal"] = stop.signal_name
        write_json_atomic(summary, self.run_dir / METRICS_NAME)
        return {k: float(v) for k, v in hparam_metrics.items() if not math.isnan(float(v))}

    def _final_files_fault(self, error: OSError) -> None:
        """metrics.json or predictions.txt could not be written (a full disk): a fault like
        a checkpoint's. The run resumed with trainer.resume=auto writes them again."""
        trainer = self.trainer
        fault = WriteFault(
            self.run_dir / METRICS_NAME,
            step=trainer.state.step,
            error=error,
            size=0,
            resume_from=self.checkpoints.latest(),
            keep_last=self.checkpoints.keep_last,
        )
        trainer.fault = fault
        log.error("%s", fault)

    def _test(self) -> Any:
        """The test split evaluated by best.pt (or, without one, the last model), with the
        weights validation used (the EMA's under `trainer.ema_eval`)."""
        state, module = self.trainer.state, self.trainer.evaluated_module
        best_path = self.checkpoints.best
        weights: AbstractContextManager[None] = nullcontext()
        if best_path.exists():
            module.load_state_dict(weights_for_inference(load_checkpoint(best_path)))
        else:
            weights = self.trainer.evaluation_weights()
            if state.best_step is not None and state.best_step != state.step:
                log.warning(
                    "no %s of the best step %d: the test split is evaluated by the model of "
                    "step %d",
                    best_path,
                    state.best_step,
                    state.step,
                )
        evaluator = self.task.evaluator(
            "test",
            module,
            device=self.device,
            autocast_dtype=PRECISIONS[self.cfg.trainer.precision],
        )
        with weights:
            return evaluator.evaluate(step=state.step)


def assemble(
    cfg: TrainConfig,
    kind: type[Task],
    config_text: str,
    run_dir: Path,
    distributed: Distributed,
    hydra_files: Mapping[str, str],
) -> AssembledRun:
    """A trainer ready to `fit`, its task's data prepared, its run dir written."""
    device = _device(cfg, distributed)
    sharded = cfg.trainer.strategy == ParallelStrategy.fsdp
    checkpoints = CheckpointManager(
        run_dir / "checkpoints", keep_last=cfg.trainer.keep_last, sharded=sharded
    )
    point = resume_point(
        cfg.trainer.resume,
        checkpoints,
        world_size=distributed.world_size,
        config_text=config_text,
    )
    seed_everything(cfg.seed)
    task, data = _prepare_task(cfg, kind, point, distributed)
    model = _model(cfg, task, None if sharded else point, device)
    batches = task.train_batches(rank=distributed.rank, world_size=distributed.world_size)
    evaluation_copy = _evaluation_copy(model, cfg, distributed)
    wrapped = _wrapped(model, cfg, device, distributed)
    # After wrapping: fully_shard replaces the parameters with their shards.
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, max_steps=cfg.trainer.max_steps)
    # Written only now: a refused resume, bad data or a batch budget too small for the
    # data leaves the run's files as they were.
    if distributed.is_main:
        _write_run_files(run_dir, config_text, hydra_files, task)
        _remove_orphans(run_dir, checkpoints.directory)
        if point is not None:
            set_aside_corrupt(point)
            adopt_best(point, checkpoints)
    logger = _logger(run_dir, config_text, point) if distributed.is_main else None
    autocast = PRECISIONS[cfg.trainer.precision]
    # Ranks other than 0 never evaluate: a sharded model stands in for the copy they lack.
    evaluated = model if evaluation_copy is None else evaluation_copy
    trainer = Trainer(
        model=wrapped,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batches,
        loss=task.loss,
        evaluator=task.evaluator("validation", evaluated, device=device, autocast_dtype=autocast),
        monitor=monitor(cfg, kind),
        checkpoints=checkpoints,
        logger=logger,
        cfg=cfg.trainer,
        device=device,
        checkpoint_extras={
            "config": config_text,
            BATCH_LAYOUT_KEY: batches.layout(),
            **task.state(),
        },
        distributed=distributed,
        evaluation_copy=evaluation_copy,
    )
    if point is not None:
        trainer.load_state_dict(point.checkpoint, path=point.path)
        restart_epoch_if_rebatched(
            point.checkpoint.get(BATCH_LAYOUT_KEY), batches.layout(), trainer
        )
        log.info("resumed from %s at step %d", point.path, trainer.state.step)
    return AssembledRun(cfg, run_dir, task, data, trainer, checkpoints, logger, device)


def _device(cfg: TrainConfig, distributed: Distributed) -> torch.device:
    device = resolve_device(
        cfg.trainer.device, field="trainer.device", local_rank=distributed.local_rank
    )
    check_precision(cfg.trainer.precision, device)
    use_tf32(device, cfg.trainer.tf32)
    return device


def _prepare_task(
    cfg: TrainConfig, kind: type[Task], point: ResumePoint | None, distributed: Distributed
) -> tuple[Task, PreparedData]:
    """The task, its tokenizers restored from the resumed checkpoint (the weights belong to
    their ids: tokenizers retrained on changed data would silently renumber them), and its
    prepared data. Rank 0 trains (or finds) the tokenizers first; the others then read its
    cache."""
    task = kind(cfg) if point is None else kind.restore(cfg, point.checkpoint, point.path)
    if not distributed.is_main:
        distributed.barrier()
    data = task.prepare()
    if distributed.is_main:
        distributed.barrier()
    return task, data


def _model(
    cfg: TrainConfig, task: Task, point: ResumePoint | None, device: torch.device
) -> nn.Module:
    model = task.build_model()
    model.checkpoint_activations(cfg.trainer.activation_checkpointing)
    if point is not None:
        model.load_state_dict(strip_prefixes(point.checkpoint["model"]))
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    detail = ""
    if device.type == "cpu":
        threads, why = cpu_threads(cfg.trainer.threads, parameters=parameters)
        torch.set_num_threads(threads)
        detail = f", {threads} thread(s) ({why})"
    log.info("model: %s parameters; device %s%s", f"{parameters:,}", device, detail)
    return model


def _write_run_files(
    run_dir: Path, config_text: str, hydra_files: Mapping[str, str], task: Task
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_text, run_dir / CONFIG_NAME)
    write_files(run_dir / HYDRA_SUBDIR, hydra_files)
    task.save_files(run_dir)


def _remove_orphans(*directories: Path) -> None:
    """Temporary files of a process killed while it wrote a checkpoint or metrics.json."""
    for directory in directories:
        removed = remove_orphan_temporaries(directory)
        if removed:
            log.info(
                "removed %d temporary file(s) that a killed process was writing: %s",
                len(removed),
                ", ".join(str(path) for path in removed),
            )


def _logger(run_dir: Path, config_text: str, point: ResumePoint | None) -> RunLogger:
    resumed_step = 0 if point is None else point.step
    logger = RunLogger(run_dir, resumed_step=resumed_step)
    # At the step it starts from: a resumed run's settings may differ (optim.lr, max_steps).
    logger.text("config", f"```yaml\n{config_text}\n```", resumed_step)
    return logger


def _evaluation_copy(
    model: nn.Module, cfg: TrainConfig, distributed: Distributed
) -> nn.Module | None:
    """Under fsdp on several processes, rank 0's unsharded copy of the model, which
    validation and the test decode with (see `Trainer`); None otherwise."""
    if cfg.trainer.strategy != ParallelStrategy.fsdp or not distributed.enabled:
        return None
    return copy.deepcopy(model) if distributed.is_main else None


def _wrapped(
    model: nn.Module, cfg: TrainConfig, device: torch.device, distributed: Distributed
) -> nn.Module:
    """The model as the loop runs it: compiled, and under DDP on several processes, or
    sharded in place under fsdp (on one process, fsdp trains the plain model)."""
    if cfg.trainer.strategy == ParallelStrategy.fsdp:
        if not distributed.enabled:
            return model
        return shard(model, param_dtype=PRECISIONS[cfg.trainer.precision])
    # torch.compile wraps the module in an OptimizedModule, itself an nn.Module.
    wrapped = cast(nn.Module, torch.compile(model)) if cfg.trainer.compile else model
    if distributed.enabled:
        # FAVOR+ projections and positions are equal on every rank by construction.
        wrapped = DistributedDataParallel(
            wrapped,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    return wrapped
