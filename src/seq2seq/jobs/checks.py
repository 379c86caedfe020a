"""Every check of a whole train config, in one place, before any data is loaded.

Hydra's composition already refuses a misspelt key and a wrong type. What is left is
here, by floor: the single settings (`seq2seq.config.checks`), the model's and the data's
against their registries (`seq2seq.model.checks`, `seq2seq.data.checks`), and the task's own
(`Task.check_config`), which also says what the run's validation computes (the metrics and
the monitor). Each raises one ValueError naming the field, the value and what is valid.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from seq2seq.config.checks import (
    check_optim,
    check_schedule,
    check_tokenizer,
    check_trainer,
    check_unread_typed,
)
from seq2seq.config.keys import check_known_keys
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import TrainerConfig
from seq2seq.data.checks import check_data_source
from seq2seq.evaluation import get_metric
from seq2seq.model.checks import check_model
from seq2seq.tasks import Task, task_class, unread_settings


def checked_config(cfg_node: DictConfig, command_line: Sequence[str] = ()) -> TrainConfig:
    """The typed config, once every key is known and every value passes `check_config`
    (`command_line`: the overrides the user typed, for the checks only they can fail)."""
    return checked_task(cfg_node, command_line)[0]


def checked_task(
    cfg_node: DictConfig, command_line: Sequence[str] = ()
) -> tuple[TrainConfig, type[Task]]:
    """`checked_config`, with the run's task (looked up here, once, and passed down)."""
    check_known_keys(cfg_node)
    cfg: TrainConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    return cfg, check_config(cfg, command_line=command_line)


def check_config(cfg: TrainConfig, *, command_line: Sequence[str] = ()) -> type[Task]:
    """Raise one clear ValueError for the first wrong or incompatible setting of `cfg`;
    returns the run's task. `command_line`: the overrides the user typed (for the checks
    only they can fail)."""
    task = task_class(cfg.task)
    if not 0 <= cfg.seed < 2**64:
        raise ValueError(f"seed={cfg.seed} must be an integer in [0, 2**64)")
    check_model(cfg.model, kind=task.model_kind)
    check_optim(cfg.optim)
    check_schedule(cfg.schedule, command_line)
    check_trainer(cfg.trainer)
    check_data_source(cfg.data, command_line)
    check_tokenizer(cfg.tokenizer, cfg.model)
    check_unread_typed(cfg, command_line, unread_settings(task), reader=f"task={cfg.task}")
    task.check_config(cfg, command_line)
    check_metrics(cfg.trainer, task, cfg.task)
    check_monitor(cfg.trainer, list(task.figures(cfg)))
    return task


def check_metrics(cfg: TrainerConfig, task: type[Task], task_name: str) -> None:
    """`trainer.metrics` are registered metrics, and a metric scored at answer positions
    (`mqar`) is one the task scores that way."""
    for name in cfg.metrics:
        try:
            metric = get_metric(name)
        except ValueError as error:
            raise ValueError(f"trainer.metrics={list(cfg.metrics)}: {error}") from None
        if metric.answers is not None and not task.scores_answers:
            raise ValueError(
                f"trainer.metrics={list(cfg.metrics)}: {name!r} scores a language model's "
                f"predictions at answer positions, which task={task_name} does not make; "
                "remove it, or use task=language_modeling"
            )


def check_monitor(cfg: TrainerConfig, figures: Sequence[str]) -> None:
    """`trainer.monitor` is one of `figures` (what the task's validation computes)."""
    if cfg.monitor not in figures:
        raise ValueError(
            f"trainer.monitor={cfg.monitor!r} is not computed; choose one of "
            f"{list(figures)} (add a metric to trainer.metrics to monitor it)"
        )


def check_search_direction(launch: DictConfig) -> None:
    """An Optuna search must seek the best of what seq2seq-train returns: the best
    value of trainer.monitor."""
    direction = launch.hydra.sweeper.get("direction")
    if not isinstance(direction, str):  # the basic sweeper, or a multi-objective search
        return
    name = launch.trainer.monitor
    node = launch.copy()
    with open_dict(node):
        del node["hydra"]
    cfg: TrainConfig = OmegaConf.to_object(node)  # type: ignore[assignment]
    figures = task_class(cfg.task).figures(cfg)
    if name not in figures:
        return  # each job's own check names the bad monitor
    wanted = "maximize" if figures[name] else "minimize"
    if direction != wanted:
        raise ValueError(
            f"hydra.sweeper.direction={direction!r}, but the search optimizes "
            f"trainer.monitor={name!r}, which is better "
            f"{'higher' if wanted == 'maximize' else 'lower'}: "
            f"set hydra.sweeper.direction={wanted}"
        )
