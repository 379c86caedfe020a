"""The training loop: accumulation, clipping, mixed precision, validation, checkpoints.

One `Trainer` drives any task's model: the task supplies the batches, the loss and the
evaluator, and the loop never asks what kind of training it runs. Everything a run depends
on (model, its EMA, optimizer, scheduler, scaler, RNG states, the data position, the step,
the best figure) goes into each checkpoint, so a resumed run takes the same steps with the
same losses as an unbroken one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from seq2seq.config.training import NonFinite, ParallelStrategy, TrainerConfig
from seq2seq.training.checkpoint import (
    DATA_KEY,
    EMA_KEY,
    CheckpointManager,
    unwrap,
    unwrapped_state_dict,
)
from seq2seq.training.distributed import Distributed
from seq2seq.training.ema import ExponentialMovingAverage
from seq2seq.training.evaluator import EvaluationResult, Evaluator
from seq2seq.training.fsdp import (
    checkpoint_tensors,
    full_model_state,
    gradient_sync_paused,
    is_sharded,
    load_checkpoint_tensors,
    whole,
)
from seq2seq.training.logger import RunLogger
from seq2seq.training.loss import LossSums
from seq2seq.training.nonfinite import (
    MIN_LOSS_SCALE,
    NONFINITE,
    NonFiniteError,
    first_nonfinite_gradient,
    first_nonfinite_module,
)
from seq2seq.training.precision import PRECISIONS, autocast
from seq2seq.training.progress import Progress
from seq2seq.training.rng import capture_rng, restore_rng
from seq2seq.training.schedule import sync_learning_rates
from seq2seq.training.sharded_checkpoint import OPTIMIZER_GROUPS_KEY, SHARDED_KEY
from seq2seq.training.signals import StopRequest
from seq2seq.training.state import BatchStream, Monitor, TrainingBatch, TrainState
from seq2seq.training.write_fault import WRITE_ERROR, WriteFault, state_bytes

log = logging.getLogger("seq2seq.train")

LossFunction = Callable[[nn.Module, Any], LossSums]
"""`(model, batch) -> summed loss`: the task's forward pass and loss."""


class Trainer:
    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler,
        batches: BatchStream,
        loss: LossFunction,
        evaluator: Evaluator,
        monitor: Monitor,
        checkpoints: CheckpointManager,
        logger: RunLogger | None,
        cfg: TrainerConfig,
        device: torch.device,
        checkpoint_extras: dict[str, Any],
        distributed: Distributed,
        evaluation_copy: nn.Module | None = None,
    ) -> None:
        """`checkpoint_extras` (config text, the task's state) go into every checkpoint.
        Under DDP or torch.compile, `model` is the wrapped module; rank 0 alone evaluates,
        logs and saves. Before each training step the model's
        `before_training_step(steps_taken)` hook runs, if it has one (FAVOR+ redraws). With
        `cfg.ema_decay`, an EMA of the weights starts from `model`'s (a resumed run's:
        `load_state_dict` restores it).

        Under `trainer.strategy=fsdp` checkpoints are `.dcp` directories that every rank
        writes, and, sharded over several ranks, `evaluator` decodes with
        `evaluation_copy`, rank 0's unsharded copy of the model, whose weights are gathered
        from the shards before each validation: decoding calls the layers' own methods
        (`init_state`, `step`), which FSDP's forward hooks never see, and inference needs
        no gradients or optimizer state, so whole weights fit where training did not."""
        self.model = model
        self.module = unwrap(model)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.loss = loss
        self.evaluator = evaluator
        self.monitor = monitor
        self.checkpoints = checkpoints
        self.logger = logger
        self.cfg = cfg
        self.device = device
        self.checkpoint_extras = checkpoint_extras
        self.distributed = distributed
        self.sharded_checkpoints = cfg.strategy == ParallelStrategy.fsdp
        self.evaluation_copy = evaluation_copy
        self.state = TrainState()
        self.autocast_dtype = PRECISIONS[cfg.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.ema = (
            None
            if cfg.ema_decay is None
            else ExponentialMovingAverage(self.module, decay=cfg.ema_decay, start=cfg.ema_start)
        )
        self.last_evaluation: EvaluationResult | None = None
        self.last_evaluation_step: int | None = None
        # What stopped a run that `fit` ended with `nonfinite` or `write_error`.
        self.fault: NonFiniteError | WriteFault | None = None

    # --- checkpoint state -------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds; under `trainer.strategy=fsdp` without the weights and the
        optimizer's state, which `save` has DCP write from every rank's shards."""
        ema = {} if self.ema is None else {EMA_KEY: self.ema.state_dict(self.model)}
        weights: dict[str, Any] = (
            {SHARDED_KEY: ["model", "optimizer"]}
            if self.sharded_checkpoints
            else {
                "model": unwrapped_state_dict(self.model),
                "optimizer": self.optimizer.state_dict(),
            }
        )
        return {
            **weights,
            **ema,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            # Every rank's generators (dropout differs by rank), restored rank by rank.
            "rng": self.distributed.gather(capture_rng()),
            # Every rank's place in a streamed split (in-memory batches have none).
            DATA_KEY: self.batches.state_dict(),
            "trainer": asdict(self.state),
            "monitor": self.monitor.name,
            **self.checkpoint_extras,
        }

    def load_state_dict(self, checkpoint: dict[str, Any], *, path: Path | None = None) -> None:
        """Restore everything but the model weights (loaded by the caller before the model
        is wrapped or compiled). Under `trainer.strategy=fsdp`, `checkpoint` is the `state.pt`
        of the `.dcp` directory `path`, from which the weights and the optimizer's state are
        loaded here, resharded to this run's processes."""
        # The saved moments are kept, but the settings are the ones configured now (the
        # run's config.yaml says so): a resume with another optim.lr or weight_decay uses it.
        configured = [
            {key: value for key, value in group.items() if key not in ("params", "lr")}
            for group in self.optimizer.param_groups
        ]
        if self.sharded_checkpoints:
            if path is None:
                raise ValueError("a sharded (.dcp) checkpoint is loaded from its path")
            load_checkpoint_tensors(
                path, self.model, self.optimizer, checkpoint, distributed=self.distributed
            )
        else:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        for group, settings in zip(self.optimizer.param_groups, configured, strict=True):
            group.update(settings)
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scheduler.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        sync_learning_rates(self.scheduler)
        self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None:  # a resume may not switch the EMA on (resume_point refuses)
            self.ema.load_state_dict(checkpoint[EMA_KEY])
        self.state = TrainState(**checkpoint["trainer"])
        rng = checkpoint["rng"]
        if len(rng) != self.distributed.world_size and self.distributed.is_main:
            # Only a sharded checkpoint gets here (resume_point refuses the others).
            log.warning(
                "the checkpoint was written by %d processes and this run has %d: rank r "
                "restores the random generators of rank r mod %d, so dropout draws differ "
                "from an unbroken run",
                len(rng),
                self.distributed.world_size,
                len(rng),
            )
        restore_rng(rng[self.distributed.rank % len(rng)])
        if checkpoint.get(DATA_KEY) is not None:
            self.batches.load_state_dict(checkpoint[DATA_KEY])

    def save(self) -> Path:
        """Every rank takes part (RNG states are gathered); rank 0 writes (under
        `trainer.strategy=fsdp`, every rank writes its shards). A file it cannot write (a
        full disk) is a `WriteFault` on every rank."""
        state = self.state_dict()
        tensors: dict[str, Any] = {}
        path = self.checkpoints.path(self.state.step)
        is_best = self.state.best_step == self.state.step
        error: OSError | None = None
        if self.sharded_checkpoints:
            tensors, state[OPTIMIZER_GROUPS_KEY] = checkpoint_tensors(self.model, self.optimizer)
            try:
                self.checkpoints.save_sharded(
                    tensors,
                    state,
                    step=self.state.step,
                    is_best=is_best,
                    distributed=self.distributed,
                )
            except OSError as failed:
                error = failed
        elif self.distributed.is_main:
            try:
                self.checkpoints.save(state, step=self.state.step, is_best=is_best)
            except OSError as failed:
                error = failed
        if self.distributed.any(error is not None):
            raise WriteFault(
                path,
                step=self.state.step,
                error=error,
                size=state_bytes({**state, **tensors}),
                # Listed only on failure: after it, the newest intact file (rank 0 logs it).
                resume_from=self.checkpoints.latest(),
                keep_last=self.checkpoints.keep_last,
            )
        return path

    # --- the loop -------------------------------------------------------------------------

    def _micro_batches(self) -> Iterator[list[TrainingBatch]]:
        """Groups of `grad_accum` batches, epoch after epoch, until max_epochs."""
        group: list[TrainingBatch] = []
        while self.cfg.max_epochs is None or self.state.epoch < self.cfg.max_epochs:
            for batch in self.batches.epoch(self.state.epoch, self.state.epoch_batches):
                self.state.epoch_batches += 1
                group.append(batch.to(self.device))
                if len(group) == self.cfg.grad_accum:
                    yield group
                    group = []
            if self.state.epoch_batches == 0:
                raise ValueError("the training split yields no batches")
            self.state.epoch += 1
            self.state.epoch_batches = 0
        if group:
            yield group

    def train_step(self, group: list[TrainingBatch]) -> dict[str, float] | None:
        """One optimizer step over `group`; the loss is normalised by the target tokens of
        the whole step, all ranks' micro-batches together, so accumulation and data
        parallelism both equal one large batch.

        Returns None when the step was not taken (a non-finite loss or gradient, or an
        fp16 overflow): the optimizer, the schedule, the step count and the FAVOR+ redraws
        stay where they were, and only the data moves on."""
        self.model.train()
        hook = getattr(self.module, "before_training_step", None)
        if hook is not None:  # FAVOR+ redraws (the same draw again after a skipped step)
            hook(self.state.step)
        distributed = self.distributed
        tokens, processed = distributed.sum(
            [
                float(sum(batch.num_targets for batch in group)),
                float(sum(batch.num_tokens for batch in group)),
            ]
        )
        # DDP averages gradients over ranks; scaling by the world size makes that a sum.
        scale = distributed.world_size / tokens
        loss_total, nll_total = 0.0, 0.0
        for index, batch in enumerate(group):
            last = index == len(group) - 1
            sync = (
                nullcontext()
                if last or not distributed.enabled
                else gradient_sync_paused(self.model)
            )
            with sync:
                with autocast(self.device, self.autocast_dtype):
                    sums = self.loss(self.model, batch)
                self.scaler.scale(sums.loss * scale).backward()
            loss_total += float(sums.loss.detach())
            nll_total += float(sums.nll.detach())
        loss_total, nll_total = distributed.sum([loss_total, nll_total])

        self.scaler.unscale_(self.optimizer)
        # The norm is measured before clipping: clipping by a non-finite norm would turn
        # every gradient into NaN and hide the parameter where the trouble began.
        gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
        # Of sharded gradients, a DTensor: its whole value sums every rank's part.
        norm = whole(torch.nn.utils.get_total_norm(gradients))
        grad_norm = float(norm)
        loss_finite = math.isfinite(loss_total)  # summed over ranks: the same on each
        grads_finite = not distributed.any(not math.isfinite(grad_norm))
        taken = loss_finite and grads_finite
        if taken:
            if self.cfg.clip_norm > 0:
                torch.nn.utils.clip_grads_with_norm_(
                    self.model.parameters(), self.cfg.clip_norm, norm
                )
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._skip_step(group, loss_total, grad_norm, loss_finite=loss_finite)
        self.optimizer.zero_grad(set_to_none=True)
        if not taken:
            return None
        lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this step used
        self.scheduler.step()
        self.state.step += 1
        if self.ema is not None:
            self.ema.update(self.module, self.state.step)
        return {
            "loss": loss_total / tokens,
            "nll": nll_total / tokens,
            "grad_norm": grad_norm,
            "tokens": processed,
            "lr": lr,
        }

    def _skip_step(
        self, group: list[TrainingBatch], loss: float, grad_norm: float, *, loss_finite: bool
    ) -> None:
        """Leave the weights alone. Under fp16 a finite loss with overflowing gradients is
        the GradScaler's business: it lowers its scale and the step is retried on the next
        batch, until the scale falls below MIN_LOSS_SCALE (fairseq's floor). Anything
        else (a scale the scaler did not lower included: the norm overflowed, not a
        gradient) is a non-finite step, named, counted and handled by `trainer.nonfinite`."""
        if self.scaler.is_enabled():
            scale = self.scaler.get_scale()
            self.scaler.update()  # lowers the scale if unscale_ found an inf or NaN
            lowered = self.scaler.get_scale() < scale
            if loss_finite and lowered and self.scaler.get_scale() >= MIN_LOSS_SCALE:
                log.info(
                    "fp16 gradient overflow at step %d; loss scale lowered to %g",
                    self.state.step + 1,
                    self.scaler.get_scale(),
                )
                return
        self._handle_nonfinite(group, loss, grad_norm)

    def _handle_nonfinite(self, group: list[TrainingBatch], loss: float, grad_norm: float) -> None:
        model = self.module
        culprit = None
        # The first micro-batch whose forward pass goes non-finite. Every one runs: a forward
        # of a sharded model gathers weights from every rank, so all ranks run the same ones.
        for batch in group:
            with autocast(self.device, self.autocast_dtype):
                found = first_nonfinite_module(
                    model,
                    lambda b=batch: self.loss(model, b),  # type: ignore[misc]
                )
            culprit = culprit or found
        if culprit:
            where = f"first non-finite output: {culprit}"
        else:
            parameter = first_nonfinite_gradient(model)
            culprit = f"{parameter} (gradient)"
            where = f"outputs finite; first non-finite gradient: {parameter}"
        step = self.state.step + 1
        message = (
            f"non-finite loss or gradient at step {step} (loss {loss}, grad norm {grad_norm}); "
            f"{where}"
        )
        self.state.skipped_steps += 1
        if self.logger is not None:
            self.logger.scalars({"train/skipped_steps": self.state.skipped_steps}, step)
        if self.cfg.nonfinite == NonFinite.stop:
            raise NonFiniteError(
                message + "; stopping (trainer.nonfinite=stop)", step=step, culprit=culprit
            )
        if self.state.skipped_steps > self.cfg.max_skipped_steps:
            raise NonFiniteError(
                message + f"; {self.state.skipped_steps} steps skipped, more than "
                f"trainer.max_skipped_steps={self.cfg.max_skipped_steps}",
                step=step,
                culprit=culprit,
            )
        log.warning("%s; skipping the step (trainer.nonfinite=skip)", message)

    @property
    def evaluated_module(self) -> nn.Module:
        """The module that validation decodes with: the model, or rank 0's unsharded copy of
        a model sharded over several ranks (it holds the weights of the last validation)."""
        return self.module if self.evaluation_copy is None else self.evaluation_copy

    def evaluation_weights(self) -> AbstractContextManager[None]:
        """The weights validation and test use in the model, inside the block: the EMA's
        under `trainer.ema_eval`, else the model's own."""
        if self.ema is not None and self.cfg.ema_eval:
            return self.ema.applied(self.module)
        return nullcontext()

    def evaluate(self) -> EvaluationResult:
        """Rank 0 evaluates; the figures reach every rank so best/patience stay in step."""
        if is_sharded(self.model):  # every rank sends its shards; rank 0's copy takes them
            weights = full_model_state(self.model)
            if self.evaluation_copy is not None:
                self.evaluation_copy.load_state_dict(weights)
        result = None
        if self.distributed.is_main:
            with self.evaluation_weights():
                result = self.evaluator.evaluate(step=self.state.step)
        figures: dict[str, float] = self.distributed.broadcast(
            {} if result is None else result.figures
        )
        if result is None:
            result = EvaluationResult(figures=figures, predictions=[])
        self.last_evaluation = result
        self.last_evaluation_step = self.state.step
        value = result.figures[self.monitor.name]
        if self.monitor.improved(value, self.state.best_value):
            self.state.best_value, self.state.best_step = value, self.state.step
            self.state.evals_without_improvement = 0
        else:
            self.state.evals_without_improvement += 1
        if self.logger is not None:
            self.logger.scalars(
                {f"valid/{k}": v for k, v in result.figures.items()}, self.state.step
            )
            self.logger.text("valid/samples", result.samples_markdown(), self.state.step)
            for tag, image in result.images.items():
                self.logger.image(f"valid/{tag}", image, self.state.step)
            for tag, text in result.texts.items():
                self.logger.text(f"valid/{tag}", text, self.state.step)
        return result

    def _stop(self, stop: StopRequest, progress: Progress) -> str:
        """A stop signal: checkpoint, say how to continue, and return the reason."""
        reason = stop.signal_name or "stopped by another rank"
        path = self.save()
        progress.write(
            f"{reason}: stopped after step {self.state.step}; checkpoint {path}; "
            "continue with trainer.resume=auto and the same hydra.run.dir"
        )
        return reason

    def _stop_nonfinite(self, error: NonFiniteError) -> str:
        """A non-finite step ends the run as a signal does: the weights are still those of
        the last step taken, so they are checkpointed (if a step was taken), and one error
        line says what happened and how to go on."""
        self.fault = error
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.nonfinite == NonFinite.stop:
            advice = "lower optim.lr, or use trainer.nonfinite=skip"
        else:  # skip is in effect and skipped more steps than it may
            lr = self.optimizer.param_groups[0]["initial_lr"]  # optim.lr as configured now
            advice = (
                f"raise trainer.max_skipped_steps from {self.cfg.max_skipped_steps}, "
                f"or lower optim.lr from {lr:g}"
            )
        if self.state.step > 0:
            where = f"checkpoint {self.save()} of step {self.state.step}"
            advice = f"continue with trainer.resume=auto and the same hydra.run.dir, and {advice}"
        else:
            where = "no step was taken, so there is no checkpoint"
        if self.distributed.is_main:
            log.error("%s; %s (%s)", error, where, advice)
        return NONFINITE

    def _stop_write_fault(self, fault: WriteFault) -> str:
        """A checkpoint that cannot be written ends the run: training on would lose every
        step after the last checkpoint at the next fault."""
        self.fault = fault
        if self.distributed.is_main:
            log.error("%s", fault)
        return WRITE_ERROR

    def _ended(self, *, late: bool = False) -> str | None:
        """Why training is over, if it is (patience is counted at validations only);
        `late`: `trainer.max_time` has run out."""
        if self.cfg.patience and self.state.evals_without_improvement >= self.cfg.patience:
            return "early_stopping"
        if self.state.step >= self.cfg.max_steps:
            return "max_steps"
        return "max_time" if late else None

    def _late(self, started: float) -> bool:
        """Whether `trainer.max_time` minutes have passed since `started`, on any rank."""
        limit = self.cfg.max_time
        return self.distributed.any(
            limit is not None and time.perf_counter() - started >= 60 * limit
        )

    def fit(self, stop: StopRequest) -> str:
        """Train until max_steps, max_epochs, max_time, early stopping or a stop signal.

        Returns why it stopped: `max_steps`, `max_epochs`, `max_time`, `early_stopping`,
        the signal name, or `nonfinite` or `write_error` (then `self.fault` says what).
        """
        cfg = self.cfg
        progress = Progress(
            mode=cfg.progress if self.distributed.is_main else "off",
            total=cfg.max_steps,
            initial=self.state.step,
        )
        reason = "max_epochs"
        started = time.perf_counter()
        window_tokens, window_start = 0.0, started
        try:
            # Resumed after the run ended (killed before its outputs were written):
            # validate so the final figures exist, and do not train on.
            ended = self._ended()
            if ended is not None:
                if self.last_evaluation is None:
                    self.evaluate()
                    self.save()
                return ended
            for group in self._micro_batches():
                try:
                    figures = self.train_step(group)
                except NonFiniteError as error:
                    reason = self._stop_nonfinite(error)
                    break
                if figures is None:  # not taken: the step count stays
                    if self.distributed.any(stop.requested):
                        reason = self._stop(stop, progress)
                        break
                    continue
                window_tokens += figures["tokens"]
                step = self.state.step
                if step % cfg.log_every == 0 or step == 1:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    scalars = {
                        "train/loss": figures["loss"],
                        "train/nll": figures["nll"],
                        "train/lr": figures["lr"],
                        "train/grad_norm": figures["grad_norm"],
                        "train/tokens_per_sec": window_tokens / elapsed,
                    }
                    if self.logger is not None:
                        self.logger.scalars(scalars, step)
                    window_tokens, window_start = 0.0, time.perf_counter()
                    progress.update(
                        step,
                        {
                            "loss": figures["loss"],
                            "lr": scalars["train/lr"],
                            "tok/s": scalars["train/tokens_per_sec"],
                        },
                        log_line=True,
                    )
                else:
                    progress.update(step, {"loss": figures["loss"]}, log_line=False)

                late = self._late(started)
                if step % cfg.eval_every == 0 or step >= cfg.max_steps or late:
                    result = self.evaluate()
                    progress.write(f"step {step} | validation | {result.summary()}")
                    self.save()
                    # tokens/s measures training alone: the window restarts after this.
                    window_tokens, window_start = 0.0, time.perf_counter()
                ended = self._ended(late=late)
                if ended is not None:
                    reason = ended
                    break
                if self.distributed.any(stop.requested):
                    reason = self._stop(stop, progress)
                    break
            else:
                # Ran out of epochs: validate and save the final state.
                if self.last_evaluation_step != self.state.step:
                    self.evaluate()
                    self.save()
        except WriteFault as fault:
            reason = self._stop_write_fault(fault)
        finally:
            progress.close()
        return reason
