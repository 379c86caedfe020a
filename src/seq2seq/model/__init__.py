"""The universal Performer layer stack and the models built from it."""

from seq2seq.model.build import (
    build_model,
    linear_settings,
    uses_linear_attention,
    validate_model_config,
)
from seq2seq.model.layer import LayerState, PerformerLayer
from seq2seq.model.seq2seq import DecoderLanguageModel, EncoderClassifier, EncoderDecoderTransformer
from seq2seq.model.stack import DecoderState, PerformerDecoder, PerformerEncoder

__all__ = [
    "DecoderLanguageModel",
    "DecoderState",
    "EncoderClassifier",
    "EncoderDecoderTransformer",
    "LayerState",
    "PerformerDecoder",
    "PerformerEncoder",
    "PerformerLayer",
    "build_model",
    "linear_settings",
    "uses_linear_attention",
    "validate_model_config",
]
