"""seq2seq-average on a tiny trained run: the written weights are the mean of the inputs,
FAVOR+ projections come from the newest checkpoint, seq2seq-generate decodes with the
result, resuming from it is refused, and every usage mistake gets one clear error.

One run is trained per module (a few seconds): a causal_linear decoder with FAVOR+ redrawn
every 2 steps, so the step checkpoints hold different projections.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seq2seq.cli.average import main
from seq2seq.cli.generate import generate_from_config
from seq2seq.config.store import CONFIG_MODULE
from seq2seq.jobs.train import train
from seq2seq.training.checkpoint import AVERAGED_KEY, checkpoint_paths, load_checkpoint

# Tiny models on a loaded two-core machine: a second intra-op thread only waits.
pytestmark = pytest.mark.usefixtures("single_thread")

TrainRun = Callable[..., Path]
Compose = Callable[..., DictConfig]
# On top of the tiny preset: three step checkpoints kept (2, 4, 6).
RUN_OVERRIDES = (
    "experiment=toy_reverse",
    "trainer.max_steps=6",
    "trainer.keep_last=3",
    "model.decoder.self_attention=causal_linear",
    "model.linear.redraw_interval=2",
)


@pytest.fixture(scope="module")
def run_dir(train_run: TrainRun) -> Path:
    return train_run("average", *RUN_OVERRIDES)


@pytest.fixture(scope="module")
def workdir(run_dir: Path) -> Path:
    return run_dir.parent


def steps(run_dir: Path) -> list[Path]:
    return checkpoint_paths(run_dir / "checkpoints")


def test_the_average_of_the_last_checkpoints_is_the_mean_of_their_weights(run_dir: Path) -> None:
    assert main([str(run_dir), "--last", "3"]) == 0
    averaged = load_checkpoint(run_dir / "checkpoints" / "average_last3.pt")
    inputs = [load_checkpoint(path) for path in steps(run_dir)]
    assert averaged[AVERAGED_KEY] == {
        "files": [path.name for path in steps(run_dir)],
        "steps": [2, 4, 6],
    }
    assert averaged["config"] == inputs[-1]["config"]
    weights = averaged["model"]
    name = next(key for key in weights if key.endswith("weight") and weights[key].dim() == 2)
    mean = sum(checkpoint["model"][name] for checkpoint in inputs) / 3
    torch.testing.assert_close(weights[name], mean, rtol=0, atol=1e-7)
    assert not torch.equal(weights[name], inputs[-1]["model"][name])

    # Every parameter, both names of a tied one among them (the output layer tied to the
    # embedding: loading keeps whichever comes last), is the mean.
    for key, value in weights.items():
        if not key.endswith("projection") and value.is_floating_point():
            mean = sum(checkpoint["model"][key] for checkpoint in inputs) / 3
            torch.testing.assert_close(value, mean, rtol=0, atol=1e-7, msg=key)

    projections = [key for key in weights if key.endswith("projection")]
    assert projections, "the causal_linear decoder should hold FAVOR+ projections"
    for key in projections:
        assert torch.equal(weights[key], inputs[-1]["model"][key])
        assert not torch.equal(inputs[0]["model"][key], inputs[-1]["model"][key])
    # Nothing the trainer wrote was touched or pruned.
    assert [path.name for path in steps(run_dir)] == [
        "step_00000002.pt",
        "step_00000004.pt",
        "step_00000006.pt",
    ]


def test_generate_decodes_the_test_split_with_an_averaged_checkpoint(
    run_dir: Path, tmp_path: Path
) -> None:
    files = [str(path) for path in steps(run_dir)[-2:]]
    output = tmp_path / "avg.pt"
    assert main([*files, "--output", str(output)]) == 0
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("generate", overrides=[f"checkpoint={output}", "split=test", "device=cpu"])
    predictions = generate_from_config(cfg)
    assert len(predictions) == 16
    assert all(isinstance(line, str) for line in predictions)


def test_resuming_from_an_averaged_checkpoint_is_refused(
    workdir: Path, run_dir: Path, compose_config: Compose
) -> None:
    output = workdir / "resume_avg.pt"
    assert main([str(run_dir), "--last", "2", "--output", str(output)]) == 0
    cfg = compose_config(*RUN_OVERRIDES, f"trainer.resume={output}")
    with pytest.raises(ValueError, match=r"average of checkpoints .* no optimizer state"):
        train(cfg, workdir / "resumed")
    assert not (workdir / "resumed" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{run}"], r"is a run dir: say how many checkpoints with --last N"),
        (["{run}", "--last", "5"], r"--last 5: .* holds 3 step checkpoints .*trainer.keep_last"),
        (["{run}", "--last", "0"], r"--last 0 must be at least 1"),
        (["{step}", "--last", "2"], r"--last N picks from a run dir"),
        (["{step}"], r"name the result with --output FILE"),
        (["{step}", "{step}", "--output", "x.pt"], r"listed twice"),
        (["{step}", "--output", "{step}"], r"is one of the checkpoints being averaged"),
        (["{step}", "--output", "best.pt"], r"the trainer owns step_\*.pt and best.pt"),
        (["{run}", "{step}", "--last", "2"], r"one run dir .* or several checkpoint files"),
        (["{run}/nowhere.pt", "--output", "x.pt"], r"no such checkpoint file or run dir"),
        (["{run}/nowhere", "--last", "2"], r"no such checkpoint file or run dir: .*nowhere"),
    ],
)
def test_usage_mistakes_get_one_clear_error(
    run_dir: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    step = str(steps(run_dir)[-1])
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(run=run_dir, step=step) for arg in argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "seq2seq-average: error:" in error
    assert re.search(message, error.replace("\n", " ")), error


def test_checkpoints_of_different_models_are_refused(
    train_run: TrainRun, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = train_run("other_model", *RUN_OVERRIDES, "trainer.max_steps=2", "model.d_ff=48")
    with pytest.raises(SystemExit):
        main(
            [
                str(steps(other)[-1]),
                str(steps(run_dir)[-1]),
                "--output",
                str(tmp_path / "mixed.pt"),
            ]
        )
    error = capsys.readouterr().err.replace("\n", " ")
    assert "different config (model.d_ff" in error
    assert "only checkpoints of one model can be averaged" in error
    assert not (tmp_path / "mixed.pt").exists()


def test_checkpoints_with_other_tokenizers_are_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same model config, other token ids: a run on other data. Averaging would mix
    embeddings of different pieces."""
    step = steps(run_dir)[-1]
    checkpoint = torch.load(step, weights_only=True)
    target = checkpoint["tokenizer"]["target"].clone()
    target[-1] ^= 1
    checkpoint["tokenizer"]["target"] = target
    other = tmp_path / "other_data.pt"
    torch.save(checkpoint, other)
    with pytest.raises(SystemExit):
        main([str(step), str(other), "--output", str(tmp_path / "mixed.pt")])
    error = capsys.readouterr().err.replace("\n", " ")
    assert f"{other} and {step} have different target tokenizers" in error
    assert not (tmp_path / "mixed.pt").exists()


def test_an_averaged_checkpoint_is_not_averaged_again(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.pt"
    assert main([str(path) for path in steps(run_dir)[-2:]] + ["--output", str(first)]) == 0
    with pytest.raises(SystemExit):
        main([str(first), str(steps(run_dir)[-1]), "--output", str(tmp_path / "again.pt")])
    assert "already an average of checkpoints" in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_named(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "step_00000099.pt"
    shutil.copy(steps(run_dir)[-1], corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    with pytest.raises(SystemExit):
        main([str(steps(run_dir)[-1]), str(corrupt), "--output", str(tmp_path / "x.pt")])
    assert f"checkpoint {corrupt} is truncated or corrupt" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_one_step_given_twice_is_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """best.pt, or any copy, holds the weights of a step checkpoint: averaging both would
    count that step twice."""
    copy = tmp_path / "copy.pt"
    shutil.copy(steps(run_dir)[-1], copy)
    with pytest.raises(SystemExit):
        main([str(steps(run_dir)[-1]), str(copy), "--output", str(tmp_path / "x.pt")])
    error = capsys.readouterr().err.replace("\n", " ")
    assert re.search(r"copy\.pt and step_\d+\.pt were both written at step \d+", error), error
    assert not (tmp_path / "x.pt").exists()


def test_an_output_replaces_only_an_earlier_average(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [str(path) for path in steps(run_dir)[-2:]]
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main([*inputs, "--output", str(notes)])
    assert "exists and is not an averaged checkpoint" in capsys.readouterr().err
    assert notes.read_text(encoding="utf-8") == "my notes\n"
    average = tmp_path / "average.pt"
    assert main([*inputs, "--output", str(average)]) == 0
    assert main([*inputs, "--output", str(average)]) == 0  # an earlier average is replaced
