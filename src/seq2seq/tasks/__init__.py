"""The kinds of training, one module each, behind the `Task` interface (tasks/base.py).

Adding one: a module with a `Task` subclass, its entry in `TASKS` (its name in `task=`), and
a `configs/task/<name>.yaml`.
"""

from seq2seq.tasks.base import DecodingOptions, Predictions, PreparedData, Task
from seq2seq.tasks.classification import ClassificationTask
from seq2seq.tasks.language_modeling import LanguageModelingTask
from seq2seq.tasks.seq2seq import Seq2SeqTask

TASKS: dict[str, type[Task]] = {
    "seq2seq": Seq2SeqTask,
    "classification": ClassificationTask,
    "language_modeling": LanguageModelingTask,
}


TASK_SETTINGS: tuple[str, ...] = tuple(
    sorted({key for task in TASKS.values() for key in task.reads})
)
"""The settings some task reads and another does not (each task declares what it reads)."""


def unread_settings(task: type[Task]) -> list[str]:
    """The task-specific settings that `task` does not read."""
    return [key for key in TASK_SETTINGS if key not in task.reads]


def task_class(name: str) -> type[Task]:
    """The task registered as `name`; an unknown name fails listing the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task={name!r} is unknown; choose one of {sorted(TASKS)}") from None


__all__ = [
    "TASKS",
    "TASK_SETTINGS",
    "DecodingOptions",
    "Predictions",
    "PreparedData",
    "Task",
    "task_class",
    "unread_settings",
]
