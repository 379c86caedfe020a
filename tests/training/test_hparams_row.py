"""One HParams row per run dir: a run resumed after a stop (a signal) or after it finished
(a raised `trainer.max_steps`) shows in TensorBoard's HParams tab as one session, with the
settings of the launch that ended last and the final figures of metrics.json."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams import metadata

from seq2seq.jobs.train import train
from support.recorded_losses import record_losses

Compose = Callable[..., DictConfig]

RUN = ("experiment=toy_reverse", "trainer.eval_every=2", "data.validation_size=4")
FINAL_STEPS = 4


def _sessions_per_directory(tensorboard: Path) -> Counter[str]:
    """How many HParams sessions (`session_start_info` summaries) each directory's event
    files hold: TensorBoard shows a row per directory that has one."""
    sessions: Counter[str] = Counter()
    for events in tensorboard.rglob("*tfevents*"):
        for event in LegacyEventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    sessions[str(events.parent.relative_to(tensorboard))] += 1
    return sessions


@pytest.mark.parametrize("first_launch", ["SIGTERM", "max_steps"])
def test_a_resumed_run_has_one_hparams_row_with_the_final_figures(
    first_launch: str, compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    if first_launch == "SIGTERM":  # stopped after step 2, before the test split
        record_losses(monkeypatch, stop_after=2)
        train(compose_config(*RUN, f"trainer.max_steps={FINAL_STEPS}"), run)
        monkeypatch.undo()
        monkeypatch.chdir(tmp_path)
    else:  # finished at step 2, tested, then trained on to a raised limit
        train(compose_config(*RUN, "trainer.max_steps=2"), run)
    assert json.loads((run / "metrics.json").read_text())["stopped"] == first_launch
    train(compose_config(*RUN, f"trainer.max_steps={FINAL_STEPS}", "trainer.resume=auto"), run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["step"]) == ("max_steps", FINAL_STEPS)

    assert _sessions_per_directory(run / "tensorboard") == {".": 1}

    # As TensorBoard reads the run dir: the last launch's settings, the final figures.
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["trainer.max_steps"].number_value == FINAL_STEPS
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    final = {
        **{f"hparam/valid/{k}": v for k, v in metrics["final_validation"].items()},
        **{f"hparam/test/{k}": v for k, v in metrics["test"].items()},
    }
    assert {info.name.tag for info in experiment.metric_infos} == set(final)
    for tag, value in final.items():
        assert events.Scalars(tag)[-1].value == pytest.approx(value), tag
