"""Bad and incompatible settings through `train()`, the path a user's command line takes:
each fails with one message naming the field, the value and what is valid, before any
data is loaded or a tokenizer trained."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.jobs.checks import checked_config
from seq2seq.jobs.train import train
from seq2seq.model.attention import ATTENTIONS

Compose = Callable[..., DictConfig]


def _choices(*names: str) -> str:
    """A regex for the list of valid names, in any bracket style, in this order."""
    return r"[\[(]" + r", ".join(f"'{name}'" for name in names) + r"[\])]"


# Unknown choices of the Enum-typed fields fail at composition: tests/config/test_choices.py.
UNKNOWN_CHOICES = [
    pytest.param(
        ("trainer.metrics=[foo]",),
        r"trainer\.metrics.*'foo'.*exact_match",
        id="metric",
    ),
]

INCOMPATIBLE = [
    pytest.param(
        ("model.decoder.self_attention=linear",),
        r"model\.decoder\.self_attention='linear' is not causal.*"
        + _choices(*sorted(name for name, kind in ATTENTIONS.items() if kind.supports_causal)),
        id="non-causal-decoder-self-attention",
    ),
    pytest.param(
        ("model.encoder.self_attention=causal_linear",),
        r"model\.encoder\.self_attention='causal_linear' is causal-only.*"
        + _choices(
            *sorted(name for name, kind in ATTENTIONS.items() if kind.supports_bidirectional)
        ),
        id="causal-encoder-self-attention",
    ),
    pytest.param(
        ("model.heads=5",),
        r"model\.d_model=32 is not divisible by model\.heads=5.*\[1, 2, 4, 8, 16, 32\]",
        id="heads-not-dividing-d-model",
    ),
    pytest.param(
        ("model.linear.nb_features=64",),
        r"model\.linear\.nb_features=64 is set, but no stack uses a linear attention.*"
        r"model\.decoder\.self_attention='softmax'.*'linear' / 'causal_linear'",
        id="feature-options-on-softmax",
    ),
    pytest.param(
        ("feature_map=elu",),
        r"model\.linear\.feature_map='elu' is set, but no stack uses a linear attention",
        id="feature-map-group-on-softmax",
    ),
    pytest.param(
        ("generation.beam_size=0",),
        r"generation\.beam_size=0 is invalid; it must be >= 1",
        id="beam-width-0-greedy",
    ),
    pytest.param(
        ("generation=beam", "generation.beam_size=0"),
        r"generation\.beam_size=0 is invalid; it must be >= 1",
        id="beam-width-0",
    ),
    pytest.param(
        ("generation=beam", "generation.beam_size=2", "generation.nbest=3"),
        r"generation\.nbest=3 is invalid.*generation\.beam_size=2",
        id="nbest-over-beam",
    ),
    pytest.param(
        ("generation.min_len=500",),
        r"generation\.min_len=500 is invalid; it must be between 0 and "
        r"model\.max_len - 1 = \d+",
        id="min-len-over-model-max-len",
    ),
    pytest.param(
        ("optim.lr=-1",),
        r"optim\.lr=-1(\.0)? must be positive",
        id="negative-lr",
    ),
    pytest.param(("optim.eps=-1",), r"optim\.eps=-1(\.0)? must be positive", id="negative-eps"),
    pytest.param(
        ("optim=sgd", "optim.momentum=-1"),
        r"optim\.momentum=-1(\.0)? must be in \[0, 1\)",
        id="negative-momentum",
    ),
    pytest.param(
        ("trainer.max_skipped_steps=-1",),
        r"trainer\.max_skipped_steps=-1 must be >= 0",
        id="negative-max-skipped-steps",
    ),
    pytest.param(
        ("attention=performer", "model.linear.chunk_size=0"),
        r"^model\.linear\.chunk_size=0 must be >= 1$",
        id="zero-chunk-size",
    ),
    pytest.param(
        ("trainer.monitor=bleu",),
        r"trainer\.monitor='bleu' is not computed.*\['loss', 'ppl', 'exact_match', 'cer'\]"
        r".*trainer\.metrics",
        id="monitor-not-among-metrics",
    ),
    pytest.param(
        ("trainer.threads=0",),
        r"trainer\.threads='0' must be auto or a positive number of threads",
        id="zero-threads",
    ),
    pytest.param(
        ("data.max_source_len=500",),
        r"data\.max_source_len=500.*exceed model\.max_len=128",
        id="source-len-over-model-max-len",
    ),
    pytest.param(
        ("model.share_embeddings=true", "tokenizer.shared=false"),
        r"model\.share_embeddings=true needs tokenizer\.shared=true",
        id="shared-embeddings-separate-tokenizers",
    ),
    pytest.param(
        ("data.data_files.train=my/train.jsonl",),
        r"data\.data_files\.train='my/train\.jsonl' is read only with data\.path, but "
        r"data\.builtin='reverse' is set; remove data\.data_files\.train",
        id="data-files-with-a-task",
    ),
    pytest.param(
        ("data.source=src",),
        r"data\.source='src' is read only with data\.path, but data\.builtin='reverse' is set",
        id="source-column-with-a-task",
    ),
    pytest.param(
        ("data.splits.validation=dev",),
        r"data\.splits\.validation='dev': data\.builtin='reverse' makes the splits "
        r"\['train', 'validation', 'test'\]; a role is kept under its own name or skipped",
        id="split-name-with-a-task",
    ),
    pytest.param(
        ("trainer.device=cpu", "trainer.precision=fp16"),
        r"trainer\.precision='fp16' needs a CUDA device.*'bf16'",
        id="fp16-on-cpu",
    ),
    pytest.param(
        ("trainer.device=mps",),
        r"trainer\.device='mps' is not a supported device; use auto, cpu, cuda or cuda:N",
        id="unsupported-device",
    ),
    pytest.param(
        ("trainer.device=cuda:7",),
        r"trainer\.device='cuda:7' but (no CUDA device is available|this machine has \d+ CUDA device)",
        id="missing-cuda-device",
    ),
    pytest.param(
        ("seed=-1",), r"^seed=-1 must be an integer in \[0, 2\*\*64\)$", id="negative-seed"
    ),
    pytest.param(
        ("data.num_workers=-1",), r"^data\.num_workers=-1 must be >= 0", id="negative-workers"
    ),
    pytest.param(
        ("data.splits.validation=null",),
        r"^data\.splits\.validation=None: training needs a validation split",
        id="no-validation-split",
    ),
    pytest.param(
        ("data.validation_size=0",),
        r"^data\.validation_size=0 must be a positive integer, or null for the dataset's default$",
        id="empty-validation-split",
    ),
    pytest.param(
        ("data.test_size=0",),
        r"^data\.test_size=0 must be .*; to skip the role, set data\.splits\.test=null$",
        id="empty-test-split",
    ),
    pytest.param(
        ("optim.lr=inf",), r"^optim\.lr=inf must be positive and finite$", id="infinite-lr"
    ),
    pytest.param(
        ("optim.weight_decay=nan",),
        r"^optim\.weight_decay=nan must be >= 0 and finite$",
        id="nan-weight-decay",
    ),
    pytest.param(
        ("trainer.clip_norm=nan",),
        r"^trainer\.clip_norm=nan must be >= 0 and finite",
        id="nan-clip-norm",
    ),
    pytest.param(
        ("optim.momentum=0.5",),
        r"^optim\.momentum=0\.5 is read only by sgd, but optim\.name='adamw'",
        id="momentum-with-adamw",
    ),
    pytest.param(
        ("optim=sgd", "optim.betas=[0.9,0.9]"),
        r"^optim\.betas=\[0\.9, 0\.9\] is read only by adam and adamw, but optim\.name='sgd'",
        id="betas-with-sgd",
    ),
    pytest.param(
        ("trainer.ema_decay=1.0",),
        r"^trainer\.ema_decay=1\.0 must be in \(0, 1\), e\.g\. 0\.999, or null for no EMA of "
        r"the weights$",
        id="ema-decay-one",
    ),
    pytest.param(
        ("trainer.ema_decay=0",),
        r"^trainer\.ema_decay=0(\.0)? must be in \(0, 1\)",
        id="ema-decay-zero",
    ),
    pytest.param(
        ("trainer.ema_decay=nan",),
        r"^trainer\.ema_decay=nan must be in \(0, 1\)",
        id="ema-decay-nan",
    ),
    pytest.param(
        ("trainer.ema_decay=0.999", "trainer.ema_start=-1"),
        r"^trainer\.ema_start=-1 must be >= 0$",
        id="negative-ema-start",
    ),
    pytest.param(
        ("trainer.ema_start=100",),
        r"^trainer\.ema_start=100 is read only with an EMA of the weights, but "
        r"trainer\.ema_decay=None; set trainer\.ema_decay \(e\.g\. 0\.999\) or remove "
        r"trainer\.ema_start$",
        id="ema-start-without-ema",
    ),
    pytest.param(
        ("trainer.ema_eval=false",),
        r"^trainer\.ema_eval=False is read only with an EMA of the weights, but "
        r"trainer\.ema_decay=None",
        id="ema-eval-without-ema",
    ),
]

# `+` opens the node before it appends, so composition lets these through.
APPENDED_KEYS = [
    pytest.param(
        ("+foo=1",),
        r"^foo is not a setting \(added with \+foo=\.\.\.\?\); valid keys: \['task', 'model', "
        r"'data', 'tokenizer', 'optim', 'schedule', 'trainer', 'generation', 'seed'\]$",
        id="appended-root-key",
    ),
    pytest.param(
        ("+trainer.max_step=5",),
        r"^trainer\.max_step is not a setting .*; valid keys of trainer: \['max_steps', ",
        id="appended-misspelt-key",
    ),
    pytest.param(
        ("+model.encoder.heads=2",),
        r"^model\.encoder\.heads is not a setting .*; valid keys of model\.encoder: "
        r"\['layers', 'self_attention'\]$",
        id="appended-nested-key",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), UNKNOWN_CHOICES + INCOMPATIBLE + APPENDED_KEYS)
def test_fails_before_any_data_is_loaded(
    overrides: tuple[str, ...],
    message: str,
    compose_config: Compose,
    tmp_path: Path,
    block_data: list[Any],
) -> None:
    cache = tmp_path / "tokenizer-cache"
    cfg = compose_config("experiment=toy_reverse", f"tokenizer.cache_dir={cache}", *overrides)
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(cfg, run)
    assert not block_data, "the config was accepted: prepare_data was called"
    assert not (run / "tokenizer").exists()
    assert not cache.exists()


def test_a_typed_min_lr_ratio_without_decay_is_refused_a_recipes_is_not(
    compose_config: Compose,
) -> None:
    typed = ("schedule=inverse_sqrt", "schedule.min_lr_ratio=0.5")
    with pytest.raises(
        ValueError,
        match=r"^schedule\.min_lr_ratio=0\.5 is read only by the schedules that decay to it, "
        r"\['cosine', 'linear'\], but schedule\.name='inverse_sqrt'",
    ):
        checked_config(compose_config("experiment=toy_reverse", *typed), typed)
    # g2p_cmudict_small sets min_lr_ratio for its cosine schedule: another schedule is
    # chosen without a way to remove it (Hydra cannot delete a schema key).
    switched = ("experiment=g2p_cmudict_small", "schedule=inverse_sqrt")
    cfg = checked_config(compose_config(*switched), switched)
    assert cfg.schedule.min_lr_ratio == 0.02


def _warmup_run(
    compose_config: Compose, tmp_path: Path, schedule: str = "inverse_sqrt"
) -> tuple[DictConfig, Path]:
    cfg = compose_config(
        "experiment=toy_reverse",
        f"schedule={schedule}",
        "schedule.warmup_steps=10",
        "trainer.max_steps=2",
        "trainer.eval_every=2",
        "data.splits.test=null",
        "data.validation_size=4",
    )
    run = tmp_path / "run"
    train(cfg, run)
    return cfg, run


def _logged(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_inverse_sqrt_allows_warmup_beyond_max_steps(
    compose_config: Compose, tmp_path: Path
) -> None:
    """inverse_sqrt has no decay phase to squeeze: warming up past the end is legal."""
    cfg, run = _warmup_run(compose_config, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", 2)
    lrs = [value for _, value in _logged(run, "train/lr")]
    assert len(lrs) == 2 and 0 < lrs[0] < lrs[1] < cfg.optim.lr  # still warming up


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_a_decaying_schedule_warms_up_for_a_run_shorter_than_its_warmup(
    compose_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture, schedule: str
) -> None:
    """`experiment=toy_reverse trainer.max_steps=30` (warmup 200) was refused; a warmup
    longer than the run has one clear reading: warm up for the whole run at its slope, as
    fairseq and Hugging Face do, and say so once."""
    with caplog.at_level(logging.WARNING, logger="seq2seq.train"):
        cfg, run = _warmup_run(compose_config, tmp_path, schedule)
    warnings = [r.getMessage() for r in caplog.records if "schedule.warmup_steps" in r.getMessage()]
    assert len(warnings) == 1
    assert "schedule.warmup_steps=10 is not below trainer.max_steps=2" in warnings[0]
    lr = cfg.optim.lr
    assert _logged(run, "train/lr") == [
        (1, pytest.approx(lr * 1 / 10)),
        (2, pytest.approx(lr * 2 / 10)),
    ]


def test_logged_learning_rate_is_the_one_the_step_used(
    compose_config: Compose, tmp_path: Path
) -> None:
    cfg, run = _warmup_run(compose_config, tmp_path)
    lr = cfg.optim.lr
    # Linear warmup over 10 steps: step s trains at lr * s / 10.
    assert _logged(run, "train/lr") == [
        (1, pytest.approx(lr * 1 / 10)),
        (2, pytest.approx(lr * 2 / 10)),
    ]


def test_a_missing_resume_checkpoint_names_trainer_resume(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    missing = tmp_path / "nowhere" / "step_00000007.pt"
    cfg = compose_config("experiment=toy_reverse", f"trainer.resume={missing}")
    with pytest.raises(FileNotFoundError, match=rf"trainer\.resume='{missing}'.*auto"):
        train(cfg, tmp_path / "run")
    assert not block_data


@pytest.mark.parametrize("full_error", [False, True], ids=["one-line", "HYDRA_FULL_ERROR"])
def test_the_command_line_prints_one_error_line(
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
    tmp_path: Path,
    full_error: bool,
) -> None:
    """`seq2seq-train` reports bad input as argparse does: one `error:` line, exit status
    2; Hydra's `HYDRA_FULL_ERROR=1` brings the traceback back."""
    env = make_subprocess_env(tmp_path)
    env.pop("HYDRA_FULL_ERROR", None)
    if full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    done = subprocess.run(
        train_command(tmp_path, "model.heads=5"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = "model.d_model=32 is not divisible by model.heads=5; choose heads among [1, 2, 4, 8, 16, 32]"
    if full_error:
        assert done.returncode == 1
        assert "Traceback" in done.stderr and f"ValueError: {message}" in done.stderr
    else:
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1] == f"seq2seq-train: error: {message}"
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.max_step=5",
            "Could not override 'trainer.max_step': Key 'max_step' not in 'TrainerConfig'; "
            "valid keys: ['max_steps', ",
        ),
        (
            "norm=rezeor",
            "In 'train': Could not find 'norm/rezeor'; "
            "choose one of ['layernorm', 'prescalenorm', 'rezero', 'rmsnorm']",
        ),
        (
            "model.norm=foo",
            "Error merging override model.norm=foo: Invalid value 'foo', expected one of "
            "[layernorm, rmsnorm, rezero, prescalenorm]",
        ),
        (
            "model.d_model=wide",
            "Error merging override model.d_model=wide: Value 'wide' of type 'str' could not "
            "be converted to Integer",
        ),
        (
            "model.d_ff=${model.nope}",
            "Interpolation key 'model.nope' not found (in model.d_ff)",
        ),
        (
            "data.data_files.train=a,b.txt",
            "Ambiguous value for argument 'data.data_files.train=a,b.txt'; 1. To use it as a "
            "list, use key=[value1,value2]; 2. To use it as string, quote the value",
        ),
    ],
    ids=[
        "misspelt-key",
        "unknown-group-option",
        "unknown-choice",
        "wrong-type",
        "broken-interpolation",
        "comma",
    ],
)
def test_mistakes_found_while_composing_print_one_line_too(
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
    tmp_path: Path,
    override: str,
    message: str,
) -> None:
    """Hydra finds these before our code runs; its own report is several lines, exit 1."""
    env = make_subprocess_env(tmp_path)
    env.pop("HYDRA_FULL_ERROR", None)
    done = subprocess.run(
        train_command(tmp_path, override), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("seq2seq-train: error: ")
    ]
    assert done.stderr.startswith(f"seq2seq-train: error: {message}"), done.stderr
    assert not (tmp_path / "run").exists()


PATH_RUN = ("data.builtin=null", "data.path=json", "data.data_files.train=t.jsonl")


def test_a_typed_task_setting_beside_a_path_is_refused(
    compose_config: Compose, tmp_path: Path, block_data: list[Any]
) -> None:
    """What the user typed is refused; what the recipe set (experiment=toy_reverse's sizes)
    is not, since the user could not remove it."""
    typed = "data.min_len=2"
    cfg = compose_config("experiment=toy_reverse", *PATH_RUN, typed)
    with pytest.raises(
        ValueError,
        match=r"^data\.min_len=2 is read only with data\.builtin, but data\.path='json' is set; "
        r"remove data\.min_len$",
    ):
        train(cfg, tmp_path / "run", command_line=[*PATH_RUN, typed])
    assert not block_data
    # The recipe's own task settings pass validation and reach the data loading.
    with pytest.raises(Exception) as loaded:  # block_data raises its DataLoaded
        train(cfg, tmp_path / "run", command_line=list(PATH_RUN))
    assert type(loaded.value).__name__ == "DataLoaded" and len(block_data) == 1


@pytest.mark.parametrize(
    ("data", "typed", "message"),
    [
        (
            "data=g2p_cmudict",
            "data.min_len=3",
            r"^data\.min_len=3 is read only by the generated datasets, but data\.builtin='g2p_cmudict' is set; remove data\.min_len$",
        ),
        (
            "data=addition",
            "data.num_symbols=5",
            r"^data\.num_symbols=5 is read only by the generated datasets that use it; data\.builtin='addition' reads only \['min_len', 'max_len'\]; remove data\.num_symbols$",
        ),
    ],
)
def test_a_typed_generator_setting_the_task_does_not_read_is_refused(
    data: str,
    typed: str,
    message: str,
    compose_config: Compose,
    tmp_path: Path,
    block_data: list[Any],
) -> None:
    cfg = compose_config("experiment=toy_reverse", data, typed)
    with pytest.raises(ValueError, match=message):
        train(cfg, tmp_path / "run", command_line=[data, typed])
    assert not block_data


@pytest.fixture
def no_data_read(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record any read of the data (`load_raw_splits`) and refuse it."""
    reads: list[Any] = []

    def load_raw_splits(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        raise AssertionError("the data was read")

    monkeypatch.setattr("seq2seq.data.prepare.load_raw_splits", load_raw_splits)
    return reads


def test_a_tokenizer_cache_that_cannot_be_made_is_named_before_the_data_is_read(
    compose_config: Compose, tmp_path: Path, no_data_read: list[Any]
) -> None:
    """A read-only working directory gave `Read-only file system: 'outputs'` after the data
    was read; a file in the way stands for any place that cannot be written."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = blocker / "cache"
    cfg = compose_config("experiment=toy_reverse", f"tokenizer.cache_dir={cache}")
    with pytest.raises(
        OSError,
        match=rf"tokenizer\.cache_dir='{cache}' \({cache}\): {blocker} is not a directory; "
        r"set tokenizer\.cache_dir to a writable directory",
    ):
        train(cfg, tmp_path / "run")
    assert not no_data_read
    assert not (tmp_path / "run").exists()


def test_a_run_dir_that_cannot_be_written_is_named_before_the_data_is_read(
    compose_config: Compose, tmp_path: Path, no_data_read: list[Any]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = compose_config("experiment=toy_reverse")
    with pytest.raises(
        OSError,
        match=rf"the run dir {blocker / 'run'} \(hydra\.run\.dir\) cannot be written: "
        rf"{blocker} is not a directory; set hydra\.run\.dir to a writable directory",
    ):
        train(cfg, blocker / "run")
    assert not no_data_read


def test_a_run_dir_hydra_cannot_make_is_one_error_line(
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
    tmp_path: Path,
) -> None:
    """Hydra makes the run dir before any of our code runs (a read-only file system gave
    a 30-line traceback); the command line names the path and the setting."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = make_subprocess_env(tmp_path)
    env.pop("HYDRA_FULL_ERROR", None)
    command = [*train_command(tmp_path), f"hydra.run.dir={blocker / 'run'}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"seq2seq-train: error: cannot make the run dir (hydra.run.dir): '{blocker / 'run'}': "
        "Not a directory; set hydra.run.dir to a writable directory"
    ]


@pytest.mark.parametrize("program", ["train", "generate"])
def test_a_config_dir_that_does_not_exist_is_one_error_line(
    make_subprocess_env: Callable[[Path], dict[str, str]], tmp_path: Path, program: str
) -> None:
    """Hydra adds --config-dir to its search path before composing (a 20-line
    SearchPathException traceback, exit 1); a usage mistake like any other."""
    env = make_subprocess_env(tmp_path)
    env.pop("HYDRA_FULL_ERROR", None)
    missing = tmp_path / "my_configs"
    command = [sys.executable, "-m", f"seq2seq.cli.{program}", "--config-dir", str(missing)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"seq2seq-{program}: error: Additional config directory '{missing}' not found: "
        "--config-dir (-cd) takes a directory of YAML configs"
    ]
