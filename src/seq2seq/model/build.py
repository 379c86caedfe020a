"""Config -> modules. The only place in the model package that reads a config object."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from seq2seq.config.model import ModelConfig
from seq2seq.model.activations import activation_spec
from seq2seq.model.attention import (
    ATTENTIONS,
    Attention,
    CausalLinearAttention,
    LinearAttention,
    MultiHeadAttention,
    SoftmaxAttention,
    attention_class,
)
from seq2seq.model.attention.feature_maps import FeatureMapFactory, make_feature_map_factory
from seq2seq.model.embedding import TokenEmbedding, make_positions
from seq2seq.model.feedforward import FeedForward
from seq2seq.model.layer import PerformerLayer
from seq2seq.model.norms import norm_scheme
from seq2seq.model.seq2seq import (
    POOLINGS,
    DecoderLanguageModel,
    EncoderClassifier,
    EncoderDecoderTransformer,
)
from seq2seq.model.stack import PerformerDecoder, PerformerEncoder

MODEL_KINDS = ("encoder_decoder", "encoder_classifier", "decoder_lm")
DEFAULT_FEATURE_MAP = "favor"
DEFAULT_REDRAW_INTERVAL = 1000
DEFAULT_CHUNK_SIZE = 64


@dataclass(frozen=True)
class LinearSettings:
    """`model.linear` with its defaults filled in."""

    feature_map: str
    nb_features: int
    redraw_interval: int
    chunk_size: int


def _attention_fields(cfg: ModelConfig) -> dict[str, str]:
    """The attention choice of every stack this model kind builds, keyed by config field."""
    fields = {}
    if cfg.kind in ("encoder_decoder", "encoder_classifier"):
        fields["model.encoder.self_attention"] = cfg.encoder.self_attention
    if cfg.kind in ("encoder_decoder", "decoder_lm"):
        fields["model.decoder.self_attention"] = cfg.decoder.self_attention
    if cfg.kind == "encoder_decoder":
        fields["model.decoder.cross_attention"] = cfg.decoder.cross_attention
    return fields


def _choices_text(fields: dict[str, str]) -> str:
    """`model.encoder.self_attention='softmax', ...`: the stacks' choices, for errors."""
    return ", ".join(f"{field}={choice!r}" for field, choice in fields.items())


def uses_linear_attention(cfg: ModelConfig) -> bool:
    """Whether a stack this model kind builds uses a feature-map (linear) attention.
    Call after `validate_model_config`: the names must be registered."""
    return any(ATTENTIONS[choice].uses_feature_map for choice in _attention_fields(cfg).values())


def linear_settings(cfg: ModelConfig) -> LinearSettings:
    head_dim = cfg.d_model // cfg.heads
    linear = cfg.linear

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    return LinearSettings(
        feature_map=given(linear.feature_map, DEFAULT_FEATURE_MAP),
        nb_features=given(linear.nb_features, max(1, int(head_dim * math.log(head_dim)))),
        redraw_interval=given(linear.redraw_interval, DEFAULT_REDRAW_INTERVAL),
        chunk_size=given(linear.chunk_size, DEFAULT_CHUNK_SIZE),
    )


def validate_model_config(cfg: ModelConfig) -> None:
    """Reject a wrong choice or an incompatible combination before anything is built."""
    if cfg.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind={cfg.kind!r} is unknown; choose one of {MODEL_KINDS}")
    for name, value in {
        "model.d_model": cfg.d_model,
        "model.heads": cfg.heads,
        "model.d_ff": cfg.d_ff,
        "model.max_len": cfg.max_len,
    }.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be a positive integer")
    if cfg.d_model % cfg.heads:
        raise ValueError(
            f"model.d_model={cfg.d_model} is not divisible by model.heads={cfg.heads}; "
            f"choose heads among {[h for h in range(1, cfg.d_model + 1) if cfg.d_model % h == 0]}"
        )
    built = _attention_fields(cfg)
    for stack, layers in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        if f"model.{stack}.self_attention" in built and layers < 1:
            raise ValueError(f"model.{stack}.layers={layers} must be at least 1")
    for name, p in {
        "model.dropout": cfg.dropout,
        "model.attention_dropout": cfg.attention_dropout,
    }.items():
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name}={p} must be in [0, 1)")
    norm_scheme(cfg.norm, cfg.norm_position)
    activation_spec(cfg.activation)
    make_positions(cfg.position, max_len=1, d_model=2)
    if cfg.kind == "encoder_classifier" and cfg.pooling not in POOLINGS:
        raise ValueError(f"model.pooling={cfg.pooling!r} is unknown; choose one of {POOLINGS}")

    for field_name, choice in built.items():
        kind = attention_class(choice, field=field_name)
        causal = field_name == "model.decoder.self_attention"
        if causal and not kind.supports_causal:
            valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_causal)
            raise ValueError(
                f"{field_name}={choice!r} is not causal and cannot be decoder self-attention; "
                f"choose one of {valid}"
            )
        if not causal and not kind.supports_bidirectional:
            valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_bidirectional)
            raise ValueError(
                f"{field_name}={choice!r} is causal-only and cannot attend in both directions; "
                f"choose one of {valid}"
            )

    explicit = {
        f"model.linear.{name}": value
        for name, value in vars(cfg.linear).items()
        if value is not None
    }
    uses_feature_map = uses_linear_attention(cfg)
    if explicit and not uses_feature_map:
        setting, value = next(iter(explicit.items()))
        raise ValueError(
            f"{setting}={value!r} is set, but no stack uses a linear attention "
            f"({_choices_text(built)}); "
            "remove it, or choose 'linear' / 'causal_linear' for a stack"
        )
    if uses_feature_map:
        settings = linear_settings(cfg)
        make_feature_map_factory(settings.feature_map, nb_features=1, seed=0)
        _check_unread_linear_settings(settings.feature_map, explicit)
        for name, value, least in (
            ("nb_features", settings.nb_features, 1),
            ("chunk_size", settings.chunk_size, 1),
            ("redraw_interval", settings.redraw_interval, 0),
        ):
            if value < least:
                raise ValueError(f"model.linear.{name}={value} must be >= {least}")
    if cfg.attention_dropout > 0 and "softmax" not in built.values():
        raise ValueError(
            f"model.attention_dropout={cfg.attention_dropout} is read only by softmax "
            f"attention, which no stack uses ({_choices_text(built)}); remove it"
        )
    if cfg.share_embeddings and cfg.kind != "encoder_decoder":
        raise ValueError(
            f"model.share_embeddings=true needs model.kind='encoder_decoder', not {cfg.kind!r}"
        )


FAVOR_ONLY = ("nb_features", "redraw_interval")
"""Linear-attention settings that only random features (FAVOR+) read."""


def _check_unread_linear_settings(feature_map: str, explicit: dict[str, Any]) -> None:
    """A random-feature setting beside deterministic features is an error, not a no-op
    (as any linear setting is on an all-softmax model)."""
    if feature_map != "favor":
        for name in FAVOR_ONLY:
            if f"model.linear.{name}" in explicit:
                raise ValueError(
                    f"model.linear.{name}={explicit[f'model.linear.{name}']!r} is read only by "
                    f"model.linear.feature_map='favor', but it is {feature_map!r}; remove it"
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
        self.layer_count = 0

    def attention(self, name: str, *, causal: bool) -> MultiHeadAttention:
        cfg = self.cfg
        head_dim = cfg.d_model // cfg.heads
        self.layer_count += 1
        kernel: Attention
        if name == "softmax":
            kernel = SoftmaxAttention(causal=causal, dropout=cfg.attention_dropout)
        elif name == "linear":
            kernel = LinearAttention(
                self.feature_maps(head_dim, self.layer_count), backend=cfg.linear.backend or "auto"
            )
        else:
            kernel = CausalLinearAttention(
                self.feature_maps(head_dim, self.layer_count),
                chunk_size=self.linear.chunk_size,
                backend=cfg.linear.backend or "auto",
            )
        return MultiHeadAttention(cfg.d_model, cfg.heads, kernel)

    def layer(
        self, self_attention: str, cross_attention: str | None, causal: bool
    ) -> PerformerLayer:
        cfg = self.cfg
        activation = activation_spec(cfg.activation)
        return PerformerLayer(
            self_attention=self.attention(self_attention, causal=causal),
            cross_attention=None
            if cross_attention is None
            else self.attention(cross_attention, causal=False),
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
                self.layer(cfg.encoder.self_attention, None, causal=False)
                for _ in range(cfg.encoder.layers)
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
                self.layer(
                    cfg.decoder.self_attention,
                    cfg.decoder.cross_attention if cross else None,
                    causal=True,
                )
                for _ in range(cfg.decoder.layers)
            ],
            final_norm=self.scheme.final_norm(cfg.d_model),
            output=output,
            dropout=cfg.dropout,
        )


def build_model(
    cfg: ModelConfig,
    *,
    src_vocab_size: int,
    tgt_vocab_size: int,
    pad_id: int,
    seed: int = 0,
    num_classes: int | None = None,
) -> nn.Module:
    """Build the model `cfg.kind` names. `seed` fixes the FAVOR+ projections.

    `encoder_classifier` needs `num_classes`; `decoder_lm` uses `tgt_vocab_size`.
    """
    validate_model_config(cfg)
    builder = _Builder(cfg, seed=seed)
    if cfg.kind == "encoder_classifier":
        if num_classes is None or num_classes < 2:
            raise ValueError(f"an encoder classifier needs num_classes >= 2, got {num_classes}")
        encoder = builder.encoder(TokenEmbedding(src_vocab_size, cfg.d_model, pad_id=pad_id))
        return EncoderClassifier(encoder, num_classes=num_classes, pooling=cfg.pooling)
    if cfg.kind == "decoder_lm":
        embedding = TokenEmbedding(tgt_vocab_size, cfg.d_model, pad_id=pad_id)
        return DecoderLanguageModel(builder.decoder(embedding, cross=False))
    source_embedding = TokenEmbedding(src_vocab_size, cfg.d_model, pad_id=pad_id)
    if cfg.share_embeddings:
        if src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"model.share_embeddings=true needs one vocabulary, but the source has "
                f"{src_vocab_size} tokens and the target {tgt_vocab_size}; set tokenizer.shared=true"
            )
        target_embedding = source_embedding
    else:
        target_embedding = TokenEmbedding(tgt_vocab_size, cfg.d_model, pad_id=pad_id)
    return EncoderDecoderTransformer(
        builder.encoder(source_embedding), builder.decoder(target_embedding, cross=True)
    )
