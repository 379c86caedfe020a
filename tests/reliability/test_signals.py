"""SIGTERM and SIGINT to a real `python -m seq2seq.cli.train` process: it finishes the step,
writes a checkpoint, says how to continue and exits 0; `trainer.resume=auto` in the same
run dir then finishes the run, with every step logged exactly once.

Both signals' runs go side by side (one thread each), so the pair costs the time of one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

from seq2seq.atomic import TEMPORARY_NAME
from seq2seq.jobs.train import run_training, train
from seq2seq.tasks.seq2seq_evaluation import Seq2SeqEvaluator as Evaluator
from seq2seq.training.evaluator import EvaluationResult
from seq2seq.training.run_files import signal_status
from seq2seq.training.signals import graceful_stop
from support.event_losses import train_losses

# Enough steps (over a second) that the signal lands long before the end, even under load.
MAX_STEPS = 120
EVAL_EVERY = 60
TIMEOUT = 240.0
SIGNALS = ("SIGTERM", "SIGINT")
STEP_LINE = re.compile(r"\bstep (\d+) \|")


@dataclass
class Launch:
    returncode: int
    output: str
    signalled_after: int | None
    """The last step the log showed when the signal went out (None: no signal sent)."""


def _launch(
    command: list[str], *, cwd: Path, env: dict[str, str], send: Sequence[tuple[str, str]] = ()
) -> Launch:
    """Run `command`; `send`: (pattern, signal name) pairs, each signal delivered once a log
    line matches its pattern, in order (a later one only after the run's handler took the
    one before: two signals that arrive before it runs merge into one)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    triggers = [(re.compile(pattern), getattr(signal, name)) for pattern, name in send]
    signalled_after: int | None = None
    timer = threading.Timer(TIMEOUT, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if triggers and triggers[0][0].search(line):
                if len(triggers) == len(send):  # the first signal
                    match = STEP_LINE.search(line)
                    signalled_after = int(match.group(1)) if match else None
                process.send_signal(triggers.pop(0)[1])
        returncode = process.wait()
    finally:
        timer.cancel()
    return Launch(returncode, "".join(lines), signalled_after)


@dataclass
class SignalledRun:
    run: Path
    stopped: Launch
    stopped_metrics: dict
    stopped_checkpoints: list[str]
    resumed: Launch


@pytest.fixture(scope="module")
def signalled_runs(
    tmp_path_factory: pytest.TempPathFactory,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> dict[str, SignalledRun]:
    """For each signal: a run stopped by it, then the same run dir resumed to the end."""
    overrides = (f"trainer.max_steps={MAX_STEPS}", f"trainer.eval_every={EVAL_EVERY}")
    tmps = {name: tmp_path_factory.mktemp(name.lower()) for name in SIGNALS}

    def interrupt_then_resume(name: str) -> SignalledRun:
        tmp, run = tmps[name], tmps[name] / "run"
        env = make_subprocess_env(tmp)
        stopped = _launch(
            train_command(tmp, *overrides), cwd=tmp, env=env, send=[(STEP_LINE.pattern, name)]
        )
        metrics_file = run / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
        resumed = _launch(train_command(tmp, *overrides, "trainer.resume=auto"), cwd=tmp, env=env)
        return SignalledRun(run, stopped, metrics, checkpoints, resumed)

    with ThreadPoolExecutor(max_workers=len(SIGNALS)) as pool:
        futures = {name: pool.submit(interrupt_then_resume, name) for name in SIGNALS}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", SIGNALS)
def test_signal_checkpoints_and_exits_cleanly(
    name: str, signalled_runs: dict[str, SignalledRun]
) -> None:
    result = signalled_runs[name]
    launch = result.stopped
    # Not finished: the status a shell gives a process ended by that signal.
    assert launch.returncode == 128 + signal.Signals[name].value, launch.output[-3000:]
    assert launch.signalled_after is not None, "no training step was logged"
    step = result.stopped_metrics.get("step")
    assert result.stopped_metrics.get("stopped") == name, result.stopped_metrics
    assert isinstance(step, int) and launch.signalled_after <= step < MAX_STEPS
    checkpoint = result.run / "checkpoints" / f"step_{step:08d}.pt"
    assert checkpoint.name in result.stopped_checkpoints
    message = re.search(rf"{name}: stopped after step {step}; checkpoint (\S+);(.*)", launch.output)
    assert message is not None, launch.output[-3000:]
    assert Path(message.group(1)) == checkpoint
    assert "trainer.resume=auto" in message.group(2) and "hydra.run.dir" in message.group(2)


@pytest.mark.parametrize("name", SIGNALS)
def test_resume_auto_finishes_the_run(name: str, signalled_runs: dict[str, SignalledRun]) -> None:
    result = signalled_runs[name]
    launch = result.resumed
    assert launch.returncode == 0, launch.output[-3000:]
    step = result.stopped_metrics["step"]
    checkpoint = result.run / "checkpoints" / f"step_{step:08d}.pt"
    assert f"resumed from {checkpoint} at step {step}" in launch.output
    metrics = json.loads((result.run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", MAX_STEPS)
    assert (result.run / "checkpoints" / f"step_{MAX_STEPS:08d}.pt").is_file()
    # Every step logged once across both launches' event files (log_every=1).
    steps = [s for s, _ in train_losses(result.run)]
    assert sorted(steps) == list(range(1, MAX_STEPS + 1)), steps


# `python -c PAUSED_RUN <where> <overrides>`: the training command, with a minute's pause
# (announced by a `PAUSED` line) where the second signal is to land: inside a checkpoint
# write (after torch.save filled the temporary file, before the rename) or before the final
# test decoding. Unpaused, a tiny run finishes its graceful stop before a second signal can
# arrive.
PAUSED_RUN = """
import runpy, sys, time
import torch
from seq2seq.jobs.train import AssembledRun

def pause_after(original):
    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        print("PAUSED", flush=True)
        time.sleep(60)
        return result
    return paused

def pause_before(original):
    def paused(*args, **kwargs):
        print("PAUSED", flush=True)
        time.sleep(60)
        return original(*args, **kwargs)
    return paused

if sys.argv.pop(1) == "checkpoint":
    torch.save = pause_after(torch.save)
else:
    AssembledRun._test = pause_before(AssembledRun._test)
runpy.run_module("seq2seq.cli.train", run_name="__main__", alter_sys=True)
"""
AT_ONCE = re.compile(r"seq2seq-train: interrupted again: stopped at once\b.*")


@pytest.mark.parametrize(
    ("where", "first", "second", "limits"),
    [
        # The checkpoint the first Ctrl-C asks for is paused, the second lands in its write.
        ("checkpoint", STEP_LINE.pattern, "^PAUSED", ("max_steps=100000", "eval_every=1000")),
        # Training has ended: the first Ctrl-C lands before or in the paused test decoding.
        ("test", "training stopped: max_steps", "SIGINT received", ("max_steps=4", "eval_every=4")),
    ],
    ids=["during-the-checkpoint", "during-the-test-decoding"],
)
def test_a_second_ctrl_c_ends_the_run_at_once_in_one_line(
    where: str,
    first: str,
    second: str,
    limits: tuple[str, str],
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """The first Ctrl-C asks for a checkpoint; a second one, while that checkpoint is
    written or while the test split is decoded, ends the process there: exit status 130,
    one line naming the last complete checkpoint, no traceback, no partial checkpoint."""
    run = train_command(tmp_path, *(f"trainer.{limit}" for limit in limits))
    command = [run[0], "-c", PAUSED_RUN, where, *run[run.index("seq2seq.cli.train") + 1 :]]
    env = make_subprocess_env(tmp_path)
    launch = _launch(command, cwd=tmp_path, env=env, send=[(first, "SIGINT"), (second, "SIGINT")])
    assert launch.returncode == 128 + signal.SIGINT, launch.output[-3000:]
    assert "Traceback" not in launch.output, launch.output[-3000:]
    lines = AT_ONCE.findall(launch.output)
    assert len(lines) == 1, launch.output[-3000:]
    checkpoints = tmp_path / "run" / "checkpoints"
    if where == "checkpoint":  # the one being written is its temporary file alone
        written = sorted(path.name for path in checkpoints.iterdir())
        assert len(written) == 1 and TEMPORARY_NAME.match(written[0]), written
        assert "there is no checkpoint yet" in lines[0]
    else:
        assert f"the last checkpoint is {checkpoints / 'step_00000004.pt'}" in lines[0]
        assert "trainer.resume=auto" in lines[0]
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / ".lock").exists()  # removed, though nothing unwound


def test_a_signal_ends_a_whole_sweep(
    tmp_path: Path,
    train_command: Callable[..., list[str]],
    make_subprocess_env: Callable[[Path], dict[str, str]],
) -> None:
    """In a multirun the signal is meant for the sweep: the running job checkpoints, then
    the process exits 128 + SIGTERM instead of starting the next job."""
    sweep = tmp_path / "sweep"
    run = train_command(tmp_path, f"trainer.max_steps={MAX_STEPS}")
    module_end = run.index("seq2seq.cli.train") + 1
    command = [
        *run[:module_end],
        "--multirun",
        *run[module_end:],
        f"hydra.sweep.dir={sweep}",
        "norm=layernorm,rezero",
    ]
    launch = _launch(
        command,
        cwd=tmp_path,
        env=make_subprocess_env(tmp_path),
        send=[(STEP_LINE.pattern, "SIGTERM")],
    )
    assert launch.returncode == 128 + signal.SIGTERM, launch.output[-3000:]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["stopped"] == "SIGTERM" and metrics["step"] < MAX_STEPS
    assert not (sweep / "0" / "failure.json").exists()
    assert not (sweep / "1").exists(), "the next job of the sweep was started"


def test_a_signal_during_the_test_decoding_still_ends_the_sweep(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training had ended, so the run finishes its outputs (stopped: max_steps), but the
    signal is recorded: the sweep ends after this job instead of starting the next."""
    original = Evaluator.evaluate
    test_sets: list[int] = []

    def evaluate(self: Evaluator, step: int) -> EvaluationResult:
        if step == 4:  # the last validation, then the test split
            test_sets.append(step)
            if len(test_sets) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        return original(self, step)

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    run = tmp_path / "run"
    train(compose_config("experiment=toy_reverse"), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["signal"]) == ("max_steps", "SIGTERM")
    assert "test" in metrics and (run / "predictions.txt").is_file()
    assert signal_status(run) == 128 + signal.SIGTERM
    # Rerun (the sweep resumed): the finished run is not trained again, and the signal it
    # recorded is history, not this call's: the sweep goes on past it.
    again = run_training(compose_config("experiment=toy_reverse", "trainer.resume=auto"), run)
    assert not again.trained
    assert json.loads((run / "metrics.json").read_text()) == metrics


@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="no SIGUSR2 on this platform")
def test_slurm_s_warning_signal_checkpoints_before_the_launcher_s_handler_runs() -> None:
    """submitit installs a SIGUSR2 handler that ends (or requeues) the job: the run stops
    gracefully first, then that handler is called once the block is left."""
    calls: list[str] = []
    launcher = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append("launcher"))
    try:
        with graceful_stop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.signal_name == "SIGUSR2"
            calls.append("checkpointed")
        assert calls == ["checkpointed", "launcher"]
        # Without a launcher's handler (SIG_DFL would end the process), the run just stops.
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        with graceful_stop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.signal_name == "SIGUSR2"
    finally:
        signal.signal(signal.SIGUSR2, launcher)
