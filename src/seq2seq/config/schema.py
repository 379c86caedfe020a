"""The root schema of `configs/train.yaml`; each node is typed by its dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config.data import DataConfig, TokenizerConfig
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.model import ModelConfig
from seq2seq.config.training import OptimConfig, ScheduleConfig, TrainerConfig


@dataclass
class TrainConfig:
    task: str = "seq2seq"
    """What is trained, a task of `seq2seq.tasks.TASKS`: `seq2seq` (an encoder-decoder from
    source to target text), `classification` (an encoder classifier from text to a label)
    or `language_modeling` (a decoder-only language model of a text column)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    seed: int = 1234
    """Seeds data generation and order, initialisation, dropout and FAVOR+ draws."""
