"""seq2seq-generate's job: a trained run's predictions for input lines or a split, written
where the outputs say, each checked before the model is loaded."""

from seq2seq.prediction.job import generate_from_config

__all__ = ["generate_from_config"]
