"""Config -> modules. The only place in the model package that reads a config object.

Its settings are checked by `seq2seq.model.checks` before anything is built; here each
choice is one registry lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

from torch import nn

from seq2seq.config.model import FeatureMap, LinearBackend, ModelConfig, Position, layer_schedule
from seq2seq.model.activations import activation_spec
from seq2seq.model.attention import ATTENTIONS, AttentionSettings, MultiHeadAttention
from seq2seq.model.attention.feature_maps import FeatureMapFactory, make_feature_map_factory
from seq2seq.model.attention.gates import GateKind
from seq2seq.model.attention.registry import build_attention
from seq2seq.model.attention.rotary import Rotary
from seq2seq.model.base_model import PerformerModel
from seq2seq.model.classifier import EncoderClassifier
from seq2seq.model.embedding import TokenEmbedding, make_positions
from seq2seq.model.encoder_decoder import EncoderDecoderTransformer
from seq2seq.model.feedforward import FeedForward
from seq2seq.model.language_model import DecoderLanguageModel
from seq2seq.model.layer import PerformerLayer
from seq2seq.model.norms import norm_scheme
from seq2seq.model.stack import PerformerDecoder, PerformerEncoder

ModelKind = Literal["encoder_decoder", "encoder_classifier", "decoder_lm"]
"""The three models built from the same layers; a task picks one."""
DEFAULT_FEATURE_MAP = FeatureMap.favor
DEFAULT_REDRAW_INTERVAL = 1000
DEFAULT_CONV_SIZE = 4
DEFAULT_WINDOW = 256


@dataclass(frozen=True)
class LinearSettings:
    """`model.linear` with its defaults filled in."""

    feature_map: FeatureMap
    nb_features: int
    redraw_interval: int
    chunk_size: int | None
    """None: each kind's own default (`Attention.default_chunk_size`)."""
    backend: LinearBackend
    gate: str
    conv_size: int
    output_gate: bool


def attention_fields(cfg: ModelConfig, kind: ModelKind) -> dict[str, str]:
    """The attention setting of every stack a model of `kind` builds, keyed by config field
    (a kind, or a schedule of kinds: `layer_schedule`)."""
    fields = {}
    if kind in ("encoder_decoder", "encoder_classifier"):
        fields["model.encoder.self_attention"] = cfg.encoder.self_attention
    if kind in ("encoder_decoder", "decoder_lm"):
        fields["model.decoder.self_attention"] = cfg.decoder.self_attention
    if kind == "encoder_decoder":
        fields["model.decoder.cross_attention"] = cfg.decoder.cross_attention
    return fields


def attention_layers(cfg: ModelConfig, kind: ModelKind) -> dict[str, list[str]]:
    """The attention kind of every layer of every stack a model of `kind` builds, keyed by
    config field."""
    layers = {
        "model.encoder.self_attention": cfg.encoder.layers,
        "model.decoder.self_attention": cfg.decoder.layers,
        "model.decoder.cross_attention": cfg.decoder.layers,
    }
    return {
        field: layer_schedule(value, layers[field], field=field)
        for field, value in attention_fields(cfg, kind).items()
    }


def uses_linear_attention(cfg: ModelConfig, kind: ModelKind) -> bool:
    """Whether a stack a model of `kind` builds uses a feature-map (linear) attention."""
    return any(
        ATTENTIONS[name].uses_feature_map
        for names in attention_layers(cfg, kind).values()
        for name in names
    )


def linear_settings(cfg: ModelConfig) -> LinearSettings:
    head_dim = cfg.d_model // cfg.heads
    linear = cfg.linear

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    nb_features = max(1, int(head_dim * math.log(head_dim)))
    if cfg.position == Position.rotary:  # rotary turns the features in pairs
        nb_features += nb_features % 2
    return LinearSettings(
        feature_map=given(linear.feature_map, DEFAULT_FEATURE_MAP),
        nb_features=given(linear.nb_features, nb_features),
        redraw_interval=given(linear.redraw_interval, DEFAULT_REDRAW_INTERVAL),
        chunk_size=linear.chunk_size,
        backend=given(linear.backend, LinearBackend.auto),
        gate=given(linear.gate, "data"),
        conv_size=given(linear.conv_size, DEFAULT_CONV_SIZE),
        output_gate=given(linear.output_gate, True),
    )


class _Builder:
    """Builds the pieces of one model; holds the settings every layer shares."""

    def __init__(self, cfg: ModelConfig, *, seed: int) -> None:
        self.cfg = cfg
        self.linear = linear_settings(cfg)
        self.feature_maps: FeatureMapFactory = make_feature_map_factory(
            self.linear.feature_map, nb_features=self.linear.nb_features, seed=seed
        )
        self.scheme = norm_scheme(cfg.norm, cfg.norm_position)
        self.rotary = Rotary() if cfg.position == Position.rotary else None
        self.layer_count = 0

    def attention(self, name: str, *, causal: bool, cross: bool = False) -> MultiHeadAttention:
        """Self-attention (or `cross`-attention, which rotary positions never turn)."""
        cfg = self.cfg
        self.layer_count += 1
        layer_id, head_dim = self.layer_count, cfg.d_model // cfg.heads
        settings = AttentionSettings(
            causal=causal,
            dropout=cfg.attention_dropout,
            feature_map=lambda: self.feature_maps(head_dim, layer_id),
            chunk_size=self.linear.chunk_size,
            backend=self.linear.backend,
            heads=cfg.heads,
            head_dim=head_dim,
            gate=cast(GateKind, self.linear.gate),
            window=DEFAULT_WINDOW if cfg.window is None else cfg.window,
        )
        attention = build_attention(name, settings)
        return MultiHeadAttention(
            cfg.d_model,
            cfg.heads,
            attention,
            rotary=None if cross else self.rotary,
            conv_size=self.linear.conv_size if attention.gated else 0,
            output_gate=self.linear.output_gate and attention.gated,
        )

    def layer(
        self, self_attention: str, cross_attention: str | None, causal: bool
    ) -> PerformerLayer:
        cfg = self.cfg
        activation = activation_spec(cfg.activation)
        return PerformerLayer(
            self_attention=self.attention(self_attention, causal=causal),
            cross_attention=None
            if cross_attention is None
            else self.attention(cross_attention, causal=False, cross=True),
            feedforward=FeedForward(
                cfg.d_model,
                cfg.d_ff,
                activation=activation.make(),
                gated=activation.gated,
                dropout=cfg.dropout,
            ),
            residual=lambda: self.scheme.residual(cfg.d_model, cfg.dropout),
        )

    def encoder(self, embedding: TokenEmbedding) -> PerformerEncoder:
        cfg = self.cfg
        return PerformerEncoder(
            embedding=embedding,
            positions=make_positions(cfg.position, max_len=cfg.max_len, d_model=cfg.d_model),
            layers=[
                self.layer(name, None, causal=False)
                for name in layer_schedule(
                    cfg.encoder.self_attention,
                    cfg.encoder.layers,
                    field="model.encoder.self_attention",
                )
            ],
            final_norm=self.scheme.final_norm(cfg.d_model),
            dropout=cfg.dropout,
        )

    def decoder(self, embedding: TokenEmbedding, *, cross: bool) -> PerformerDecoder:
        cfg = self.cfg
        output = nn.Linear(cfg.d_model, embedding.num_embeddings, bias=False)
        if cfg.tie_output_embeddings:
            output.weight = embedding.weight
        return PerformerDecoder(
            embedding=embedding,
            positions=make_positions(cfg.position, max_len=cfg.max_len, d_model=cfg.d_model),
            layers=[
                self.layer(name, cross_name if cross else None, causal=True)
                for name, cross_name in zip(
                    layer_schedule(
                        cfg.decoder.self_attention,
                        cfg.decoder.layers,
                        field="model.decoder.self_attention",
                    ),
                    layer_schedule(
                        cfg.decoder.cross_attention,
                        cfg.decoder.layers,
                        field="model.decoder.cross_attention",
                    ),
                    strict=True,
                )
            ],
            final_norm=self.scheme.final_norm(cfg.d_model),
            output=output,
            dropout=cfg.dropout,
        )


def build_model(
    cfg: ModelConfig,
    *,
    kind: ModelKind = "encoder_decoder",
    src_vocab_size: int,
    tgt_vocab_size: int,
    pad_id: int,
    seed: int = 0,
    num_classes: int | None = None,
) -> PerformerModel:
    """Build the model of `kind` from checked settings (`seq2seq.config.checks.check_model`).
    `seed` fixes the FAVOR+ projections. `encoder_classifier` needs `num_classes`;
    `decoder_lm` uses `tgt_vocab_size`."""
    builder = _Builder(cfg, seed=seed)
    redraw = builder.linear.redraw_interval if uses_linear_attention(cfg, kind) else 0
    if kind == "encoder_classifier":
        assert num_classes is not None and num_classes >= 1, num_classes
        encoder = builder.encoder(TokenEmbedding(src_vocab_size, cfg.d_model, pad_id=pad_id))
        return EncoderClassifier(
            encoder, num_classes=num_classes, pooling=cfg.pooling, redraw_interval=redraw
        )
    if kind == "decoder_lm":
        embedding = TokenEmbedding(tgt_vocab_size, cfg.d_model, pad_id=pad_id)
        return DecoderLanguageModel(builder.decoder(embedding, cross=False), redraw_interval=redraw)
    source_embedding = TokenEmbedding(src_vocab_size, cfg.d_model, pad_id=pad_id)
    if cfg.share_embeddings:
        assert src_vocab_size == tgt_vocab_size, "shared embeddings need one vocabulary"
        target_embedding = source_embedding
    else:
        target_embedding = TokenEmbedding(tgt_vocab_size, cfg.d_model, pad_id=pad_id)
    return EncoderDecoderTransformer(
        builder.encoder(source_embedding),
        builder.decoder(target_embedding, cross=True),
        redraw_interval=redraw,
    )
