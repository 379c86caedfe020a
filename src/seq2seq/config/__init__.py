"""Typed config schema (dataclasses) registered in Hydra's ConfigStore."""

from seq2seq.config.data import DataConfig, DataFilesConfig, SplitsConfig, TokenizerConfig
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.model import DecoderConfig, EncoderConfig, LinearAttentionConfig, ModelConfig
from seq2seq.config.schema import TrainConfig
from seq2seq.config.training import OptimConfig, ScheduleConfig, TrainerConfig

__all__ = [
    "DataConfig",
    "DataFilesConfig",
    "DecoderConfig",
    "EncoderConfig",
    "GenerationConfig",
    "LinearAttentionConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "SplitsConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TrainerConfig",
]
