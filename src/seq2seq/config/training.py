"""Schema of the `optim`, `schedule` and `trainer` config nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config.choice import Choice


class Optimizer(Choice):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Schedule(Choice):
    inverse_sqrt = "inverse_sqrt"
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class Precision(Choice):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class ParallelStrategy(Choice):
    ddp = "ddp"
    fsdp = "fsdp"


class NonFinite(Choice):
    skip = "skip"
    stop = "stop"


class ProgressMode(Choice):
    auto = "auto"
    bar = "bar"
    log = "log"


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.adamw
    """`adamw`, `adam` or `sgd`."""
    lr: float = 5e-4
    """Peak learning rate (reached at the end of warmup)."""
    weight_decay: float = 0.01
    """Weight decay: decoupled from the gradient by `adamw`, an L2 term added to the
    gradient by `adam` and `sgd` (as in torch). Biases, norms and scalars are never decayed."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    momentum: float = 0.0
    """SGD momentum."""


@dataclass
class ScheduleConfig:
    name: Schedule = Schedule.inverse_sqrt
    """`inverse_sqrt`, `cosine`, `linear` or `constant`, each after a linear warmup."""
    warmup_steps: int = 500
    """Optimizer steps of linear warmup from 0 to `optim.lr`. A warmup as long as the run
    or longer (`trainer.max_steps`) warms up over the whole run, with a warning."""
    min_lr_ratio: float = 0.0
    """Floor of `cosine`/`linear` decay, as a fraction of `optim.lr`."""


@dataclass
class TrainerConfig:
    max_steps: int = 10000
    """Optimizer steps to train for; the schedule spans them."""
    max_epochs: int | None = None
    """Stop after this many passes over the data as well, if set."""
    max_time: float | None = None
    """Stop after this many minutes of wall-clock time as well (validations included; a
    resumed run's minutes count anew), validating and testing there as at max_steps: runs
    compared at equal time. null: no limit."""
    grad_accum: int = 1
    """Batches accumulated into one optimizer step."""
    clip_norm: float = 1.0
    """Gradient norm clipping (0 disables)."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy."""
    precision: Precision = Precision.fp32
    """`fp32`, `bf16` (autocast) or `fp16` (autocast + GradScaler, GPU only)."""
    compile: bool = False
    """Wrap the model in `torch.compile`."""
    strategy: ParallelStrategy = ParallelStrategy.ddp
    """How several processes (torchrun) train one model: `ddp` (every rank holds the whole
    model, gradients and optimizer state; checkpoints are `step_<N>.pt` files written by rank
    0) or `fsdp` (FSDP2: `fully_shard` per layer and on the root, so each rank holds 1/N of
    them, gathering a layer's weights only while it runs; under `precision=bf16` the gathered
    weights are bf16 and gradients are reduced in float32). `fsdp` checkpoints are
    `step_<N>.dcp` directories of `torch.distributed.checkpoint`, written by every rank, which
    resume on another number of processes (resharded). A run may not switch strategy on
    resume. Not with `compile`, `ema_decay` or `precision=fp16`."""
    activation_checkpointing: bool = False
    """Keep only each layer's input for the backward pass and recompute the layer there
    (`torch.utils.checkpoint`, non-reentrant, in training only): activation memory of one
    layer instead of all of them, for long contexts, for about one more forward pass of
    time. Losses and gradients stay the same (dropout redraws the same masks), and it may
    change on resume. Measured by `scripts/bench_long.py --checkpointing`."""
    device: str = "auto"
    """`auto` (cuda when available), `cpu`, `cuda`, `cuda:1`, ..."""
    tf32: bool = True
    """On CUDA, let float32 matmuls use TF32 tensor cores
    (`torch.set_float32_matmul_precision("high")`): the float32 regions of the linear
    attentions under bf16 autocast need it to be fast. false keeps them exact (IEEE)."""
    threads: str = "auto"
    """CPU threads of torch's intra-op pool (`torch.set_num_threads`): a number, or `auto`:
    one thread for a model under 5M parameters (a second thread gains it little and, on a
    busy machine, makes it wait for a core), otherwise the cores not already busy (by the
    load average), at least one. Ignored on CUDA."""
    eval_every: int = 500
    """Validate every N optimizer steps (and at the end)."""
    log_every: int = 50
    """Write training scalars every N optimizer steps."""
    metrics: list[str] = field(default_factory=lambda: ["exact_match"])
    """Validation metrics computed on decoded outputs (see seq2seq.evaluation)."""
    monitor: str = "exact_match"
    """Validation figure that picks the best checkpoint and drives early stopping:
    `loss`, or one of `metrics`."""
    patience: int = 0
    """Stop after this many validations without improvement of `monitor` (0: never)."""
    num_samples: int = 4
    """Validation examples whose predictions are logged as text."""
    sampled_documents: int = 200
    """language_modeling: documents sampled from an empty prompt (with the `generation`
    settings) at each validation and test, on which the rule metrics (`dyck`) are scored;
    none without a rule metric (`mqar` scores the held-out documents themselves)."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    resume: str | None = None
    """`auto`/`true`: continue from the latest checkpoint in the run dir; or a checkpoint
    path, or another run dir (its latest step checkpoint); null starts fresh."""
    ema_decay: float | None = None
    """Keep an exponential moving average (EMA) of the weights, as fairseq's and timm's: after
    each optimizer step taken, `ema = ema_decay * ema + (1 - ema_decay) * weights`, in
    float32 on the training device (buffers such as FAVOR+ projections are the model's, not
    averaged). In (0, 1), e.g. 0.999 (about the last 1000 steps); null: no EMA. Checkpoints
    hold it as `ema` beside the raw weights (`model`, which training resumes from). A resume
    may change the value, not switch the EMA on or off."""
    ema_start: int = 0
    """With ema_decay: the EMA copies the weights at steps 1 to N instead of averaging them
    (fairseq's ema_start_update), so the early weights do not linger in it."""
    ema_eval: bool = True
    """With ema_decay: validation (so best.pt and early stopping), the test figures,
    seq2seq-generate and seq2seq-average use the EMA weights; false keeps and saves the EMA
    but evaluates the raw weights. A resume may not change it."""
    nonfinite: NonFinite = NonFinite.skip
    """On a non-finite loss or gradient: `skip` the step, or `stop` the run."""
    max_skipped_steps: int = 100
    """Stop the run after this many skipped non-finite steps."""
    progress: ProgressMode = ProgressMode.auto
    """`bar` (tqdm), `log` (plain lines) or `auto` (bar on a terminal)."""
