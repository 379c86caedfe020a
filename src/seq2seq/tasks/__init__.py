"""The kinds of training, one module each, behind the `Task` interface (tasks/base.py).

Adding one: a module with a `Task` subclass, its entry in `TASKS`, its name in
`seq2seq.config.schema.TaskName`, and a `configs/task/<name>.yaml`.
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


def task_class(name: str) -> type[Task]:
    """The task registered as `name`; an unknown name fails listing the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task={name!r} is unknown; choose one of {sorted(TASKS)}") from None


__all__ = ["TASKS", "DecodingOptions", "Predictions", "PreparedData", "Task", "task_class"]
