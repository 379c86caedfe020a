"""trainer.strategy=fsdp: FSDP2 on CPU processes (gloo), checkpoints through
torch.distributed.checkpoint that reshard on load.

The references are independent runs: DDP on the same two ranks (the same losses, up to the
order in which reduce-scatter and all-reduce sum), an unbroken FSDP run (a resume at the same
world size takes bit-for-bit the same steps), and the checkpoint a run resumed on 1 or 4
processes writes again before any step (the same weights and optimizer state, max abs
difference 0). The subprocess tests are `slow` (about 10 s per torchrun on two cores).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from seq2seq.jobs.checks import checked_config
from seq2seq.jobs.generate import generate_from_config
from seq2seq.jobs.train import run_training, train
from seq2seq.training import sharded_checkpoint
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.sharded_checkpoint import is_sharded_checkpoint
from seq2seq.training.write_fault import WRITE_ERROR
from support.distributed_runs import train_processes, train_scalars
from support.recorded_losses import record_losses

Compose = Callable[..., DictConfig]

COMMON = (
    "experiment=toy_reverse",
    "model=tiny",
    "model.dropout=0.1",
    "trainer.device=cpu",  # gloo, also on a machine with a GPU
    "trainer.max_steps=4",
    "trainer.grad_accum=2",  # FSDP's reduce-scatter paused for the first micro-batch
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.progress=log",
    "schedule.warmup_steps=0",
    "data.train_size=200",
    "data.validation_size=8",
    "data.test_size=8",
    "data.max_len=8",
    "data.max_tokens=64",
)
FSDP = "trainer.strategy=fsdp"


def _train(tmp_path: Path, run: str, processes: int, *overrides: str) -> Path:
    """seq2seq-train into `<tmp_path>/<run>` on `processes` CPU processes."""
    return train_processes(tmp_path / run, *COMMON, *overrides, processes=processes, cwd=tmp_path)


def _scalars(run_dir: Path, tag: str) -> dict[int, float]:
    return dict(train_scalars(run_dir, tag))


def _max_abs_difference(got: Any, want: Any, where: str = "") -> float:
    """The largest |got - want| over two nested dicts of tensors, which must have the same
    keys, shapes and dtypes (and equal non-tensor leaves)."""
    if isinstance(want, Mapping):
        assert isinstance(got, Mapping) and got.keys() == want.keys(), where
        return max(
            (_max_abs_difference(got[key], want[key], f"{where}.{key}") for key in want),
            default=0.0,
        )
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), where
        assert got.shape == want.shape and got.dtype == want.dtype, where
        if want.numel() == 0:
            return 0.0
        return float((got.double() - want.double()).abs().max())
    assert got == want, where
    return 0.0


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four steps of FSDP on two ranks, checkpoints at steps 2 and 4."""
    return _train(tmp_path_factory.mktemp("fsdp"), "two_ranks", 2, FSDP)


@pytest.mark.slow
def test_fsdp_checkpoints_are_dcp_directories(fsdp_run: Path) -> None:
    checkpoints = fsdp_run / "checkpoints"
    names = sorted(path.name for path in checkpoints.iterdir())
    assert names == ["best.dcp", "step_00000002.dcp", "step_00000004.dcp"]
    step = checkpoints / "step_00000004.dcp"
    assert sorted(path.name for path in step.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "state.pt",
    ]
    checkpoint = load_checkpoint(step)  # one process, no process group: whole tensors
    assert len(checkpoint["rng"]) == 2 and checkpoint["trainer"]["step"] == 4
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(
        next(iter(checkpoint["optimizer"]["state"].values()))
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fsdp_losses_match_ddp_on_two_ranks(fsdp_run: Path, tmp_path: Path, precision: str) -> None:
    """fp32: the same losses and gradient norms, to float32 rounding (FSDP reduce-scatters
    where DDP all-reduces, and sums the norm shard by shard). bf16: FSDP gathers every weight
    in bf16 where DDP's autocast casts only the matmuls' operands, so 2% apart."""
    overrides = (f"trainer.precision={precision}",)
    fsdp = fsdp_run if precision == "fp32" else _train(tmp_path, "fsdp", 2, FSDP, *overrides)
    ddp = _train(tmp_path, "ddp", 2, *overrides)
    tolerance = {"fp32": 1e-5, "bf16": 2e-2}[precision]
    for tag in ("train/loss", "train/grad_norm"):
        got, want = _scalars(fsdp, tag), _scalars(ddp, tag)
        assert list(got) == list(want) == [1, 2, 3, 4], tag
        assert list(got.values()) == pytest.approx(list(want.values()), rel=tolerance), tag
    if precision == "fp32":
        fsdp_model = load_checkpoint(fsdp / "checkpoints" / "step_00000004.dcp")["model"]
        ddp_model = load_checkpoint(ddp / "checkpoints" / "step_00000004.pt")["model"]
        assert fsdp_model.keys() == ddp_model.keys()
        for name, tensor in ddp_model.items():
            # A key bias adds one constant to a query's every score, which softmax ignores:
            # its gradient is rounding noise, which Adam divides by its own size.
            atol = 1e-4 if name.endswith("k_proj.bias") else 1e-5
            torch.testing.assert_close(fsdp_model[name], tensor, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.slow
def test_fsdp_resumed_on_two_ranks_matches_the_unbroken_run(fsdp_run: Path, tmp_path: Path) -> None:
    resumed = _train(
        tmp_path,
        "resumed",
        2,
        FSDP,
        f"trainer.resume={fsdp_run / 'checkpoints' / 'step_00000002.dcp'}",
    )
    unbroken = _scalars(fsdp_run, "train/loss")
    assert _scalars(resumed, "train/loss") == {step: unbroken[step] for step in (3, 4)}
    final = load_checkpoint(resumed / "checkpoints" / "step_00000004.dcp")
    reference = load_checkpoint(fsdp_run / "checkpoints" / "step_00000004.dcp")
    assert _max_abs_difference(final["model"], reference["model"]) == 0.0
    assert _max_abs_difference(final["optimizer"], reference["optimizer"]) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 4])
def test_fsdp_resumes_on_another_number_of_processes(
    fsdp_run: Path, tmp_path: Path, processes: int
) -> None:
    """Resumed from the last step, the run has nothing to train: it validates and writes
    step 4 again, from the state it loaded resharded over `processes` ranks."""
    source = fsdp_run / "checkpoints" / "step_00000004.dcp"
    resumed = _train(tmp_path, "resumed", processes, FSDP, f"trainer.resume={source}")
    written = resumed / "checkpoints" / "step_00000004.dcp"
    shards = sorted(path.name for path in written.glob("*.distcp"))
    assert shards == [f"__{rank}_0.distcp" for rank in range(processes)]
    got, want = load_checkpoint(written), load_checkpoint(source)
    assert len(got["rng"]) == processes
    assert _max_abs_difference(got["model"], want["model"]) == 0.0
    assert _max_abs_difference(got["optimizer"], want["optimizer"]) == 0.0
    assert got["scheduler"] == want["scheduler"]
    for key in ("step", "epoch", "best_step", "best_value"):
        assert got["trainer"][key] == want["trainer"][key], key
    # Other processes lay the batches out anew: the epoch starts again from its first one.
    assert got["trainer"]["epoch_batches"] == 0 < want["trainer"]["epoch_batches"]


@pytest.mark.slow
def test_generate_decodes_with_a_dcp_checkpoint(fsdp_run: Path, compose_generate: Compose) -> None:
    """seq2seq-generate reads best.dcp on one process (no process group) as a .pt file."""
    predictions = generate_from_config(
        compose_generate(f"checkpoint={fsdp_run}", "split=test", "device=cpu")
    )
    assert len(predictions) == 8
    step = fsdp_run / "checkpoints" / "step_00000004.dcp"
    assert (
        len(
            generate_from_config(compose_generate(f"checkpoint={step}", "device=cpu", "split=test"))
        )
        == 8
    )


def test_fsdp_on_one_process_resumes_as_an_unbroken_run(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one process fsdp trains the plain model, but writes and resumes .dcp checkpoints."""
    overrides = (*COMMON, FSDP)
    unbroken = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides), tmp_path / "unbroken")
    first = record_losses(monkeypatch, stop_after=3)
    run = tmp_path / "interrupted"
    train(compose_config(*overrides), run)
    assert is_sharded_checkpoint(run / "checkpoints" / "step_00000003.dcp")
    second = record_losses(monkeypatch, stop_after=None)
    train(compose_config(*overrides, "trainer.resume=auto"), run)
    assert first + second == unbroken
    final = load_checkpoint(run / "checkpoints" / "step_00000004.dcp")
    reference = load_checkpoint(tmp_path / "unbroken" / "checkpoints" / "step_00000004.dcp")
    assert _max_abs_difference(final["model"], reference["model"]) == 0.0
    assert _max_abs_difference(final["optimizer"], reference["optimizer"]) == 0.0

    with pytest.raises(
        ValueError, match=r"trainer.strategy=fsdp run but this run has trainer.strategy=ddp"
    ):
        train(compose_config(*COMMON, "trainer.resume=auto", "trainer.max_steps=5"), run)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "trainer.ema_decay=0.999",
            "trainer.ema_decay=0.999 is not supported with trainer.strategy='fsdp'",
        ),
        (
            "trainer.compile=true",
            "trainer.compile=True is not supported with trainer.strategy='fsdp'",
        ),
        (
            "trainer.precision=fp16",
            "trainer.precision='fp16' is not supported with trainer.strategy='fsdp'",
        ),
    ],
)
def test_fsdp_refuses_what_it_does_not_support(
    compose_config: Compose, setting: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        checked_config(compose_config("experiment=toy_reverse", FSDP, setting))


def test_an_unknown_strategy_is_refused_at_composition(compose_config: Compose) -> None:
    with pytest.raises(ConfigCompositionException) as raised:
        compose_config("experiment=toy_reverse", "trainer.strategy=zero3")
    cause = str(raised.value.__cause__)
    assert "Invalid value 'zero3'" in cause and "[ddp, fsdp]" in cause


def test_a_full_disk_at_a_dcp_checkpoint_is_a_write_fault(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DCP's writer fails as a full disk fails it (DCP reports it as its own
    CheckpointException): the run stops with write_error, no part of step 4's directory is
    left, and step 2's is intact."""
    writes: list[Path] = []

    class FullDisk(sharded_checkpoint.FileSystemWriter):
        def write_data(self, plan: Any, planner: Any) -> Any:
            writes.append(Path(self.path))
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write_data(plan, planner)

    monkeypatch.setattr(sharded_checkpoint, "FileSystemWriter", FullDisk)
    run = tmp_path / "run"
    outcome = run_training(compose_config(*COMMON, FSDP), run)
    assert outcome.fault is not None
    assert outcome.fault.startswith(
        f"cannot write {run / 'checkpoints' / 'step_00000004.dcp'} at step 4: No space left"
    )
    assert json.loads((run / "metrics.json").read_text())["stopped"] == WRITE_ERROR
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == [
        "best.dcp",
        "step_00000002.dcp",
    ]
    assert load_checkpoint(run / "checkpoints" / "step_00000002.dcp")["trainer"]["step"] == 2
