"""The universal Performer layer stack and the models built from it."""

from seq2seq.model.base_model import PerformerModel
from seq2seq.model.build import (
    ModelKind,
    attention_fields,
    build_model,
    linear_settings,
    uses_linear_attention,
)
from seq2seq.model.classifier import EncoderClassifier
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.model.language_model import DecoderLanguageModel
from seq2seq.model.layer import LayerState, PerformerLayer
from seq2seq.model.stack import DecoderState, PerformerDecoder, PerformerEncoder

__all__ = [
    "DecoderLanguageModel",
    "DecoderState",
    "EncoderClassifier",
    "EncoderDecoderTransformer",
    "LayerState",
    "ModelKind",
    "PerformerDecoder",
    "PerformerEncoder",
    "PerformerLayer",
    "PerformerModel",
    "attention_fields",
    "build_model",
    "linear_settings",
    "uses_linear_attention",
]
