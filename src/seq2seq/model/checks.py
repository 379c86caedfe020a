"""The checks of the `model` settings against the kinds they choose: widths, depths, the
attention kinds each stack may use, and the settings only some kinds read. Each raises one
ValueError naming the field, the value and what is valid."""

from __future__ import annotations

from seq2seq.config.model import (
    FeatureMap,
    LinearBackend,
    ModelConfig,
    NormPosition,
    Position,
)
from seq2seq.model.attention.backends import check_backend
from seq2seq.model.attention.gates import GATES
from seq2seq.model.attention.registry import ATTENTIONS
from seq2seq.model.build import (
    ModelKind,
    attention_fields,
    attention_layers,
    linear_settings,
)
from seq2seq.model.norms import NORMS


def _choices_text(fields: dict[str, str]) -> str:
    """`model.encoder.self_attention='softmax', ...`: the stacks' choices, for errors."""
    return ", ".join(f"{field}={choice!r}" for field, choice in fields.items())


POST_NORMS = tuple(name for name, positions in NORMS.items() if NormPosition.post in positions)
"""The residual schemes that have a post-norm form."""


FAVOR_ONLY = ("nb_features", "redraw_interval")
"""Linear-attention settings that only random features (FAVOR+) read."""


def check_model(cfg: ModelConfig, *, kind: ModelKind) -> None:
    """The model settings of a model of `kind` (the task's)."""
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
    built = attention_fields(cfg, kind)
    for stack, depth in (("encoder", cfg.encoder.layers), ("decoder", cfg.decoder.layers)):
        if f"model.{stack}.self_attention" in built and depth < 1:
            raise ValueError(f"model.{stack}.layers={depth} must be at least 1")
    for name, p in {
        "model.dropout": cfg.dropout,
        "model.attention_dropout": cfg.attention_dropout,
    }.items():
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name}={p} must be in [0, 1)")
    if cfg.norm_position == NormPosition.post and cfg.norm not in POST_NORMS:
        raise ValueError(
            f"model.norm_position='post' is not available with model.norm={cfg.norm!r}; "
            f"choose 'pre' (post-norm exists for {' and '.join(POST_NORMS)} only)"
        )
    layers = attention_layers(cfg, kind)
    for field_name, names in layers.items():
        for choice in dict.fromkeys(names):
            _check_kind(
                field_name,
                choice,
                causal=field_name == "model.decoder.self_attention",
                cross=field_name == "model.decoder.cross_attention",
            )
    _check_linear(cfg, kind, built)
    _check_rotary(cfg, layers)
    windowed = any("sliding_window" in names for names in layers.values())
    if cfg.window is not None and not windowed:
        raise ValueError(
            f"model.window={cfg.window} is read only by sliding_window attention, which no "
            f"stack uses ({_choices_text(built)}); remove it"
        )
    if cfg.window is not None and cfg.window < 1:
        raise ValueError(f"model.window={cfg.window} must be a positive number of keys")
    softmax = any({"softmax", "sliding_window"} & set(names) for names in layers.values())
    if cfg.attention_dropout > 0 and not softmax:
        raise ValueError(
            f"model.attention_dropout={cfg.attention_dropout} is read only by softmax "
            f"attention, which no stack uses ({_choices_text(built)}); remove it"
        )
    if cfg.share_embeddings and kind != "encoder_decoder":
        raise ValueError(
            f"model.share_embeddings=true ties source and target embeddings, but this task's "
            f"model ({kind}) has one embedding; remove it"
        )


def _check_kind(field_name: str, choice: str, *, causal: bool, cross: bool) -> None:
    """`choice` (one layer's kind in `field_name`) is registered and attends the way the
    stack needs: causally for decoder self-attention, in both directions elsewhere, and
    over another sequence for cross-attention."""
    kind_class = ATTENTIONS.get(choice)
    if kind_class is None:
        raise ValueError(
            f"{field_name}: {choice!r} is not an attention kind; choose one of {sorted(ATTENTIONS)}"
        )
    if causal and not kind_class.supports_causal:
        valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_causal)
        raise ValueError(
            f"{field_name}={choice!r} is not causal and cannot be decoder self-attention; "
            f"choose one of {valid}"
        )
    if not causal and not kind_class.supports_bidirectional:
        valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_bidirectional)
        raise ValueError(
            f"{field_name}={choice!r} is causal-only and cannot attend in both directions; "
            f"choose one of {valid}"
        )
    if cross and not kind_class.supports_cross:
        valid = sorted(n for n, c in ATTENTIONS.items() if c.supports_cross)
        raise ValueError(
            f"{field_name}={choice!r} cannot attend another sequence (its keys are positions "
            f"of the same sequence); choose one of {valid}"
        )


GATED_ONLY = ("gate", "conv_size", "output_gate")
"""Linear-attention settings that only the gated kinds (`gated_linear`, `delta`) read."""


def _check_linear(cfg: ModelConfig, kind: ModelKind, built: dict[str, str]) -> None:
    """`model.linear.*`: each setting set explicitly is read by a kind some stack uses, and
    in range. The feature-map kinds read the feature settings and the backend, the gated
    kinds the gate and block settings, both the chunk size."""
    explicit = {name: value for name, value in vars(cfg.linear).items() if value is not None}
    kinds = [ATTENTIONS[name] for names in attention_layers(cfg, kind).values() for name in names]
    feature_maps = any(k.uses_feature_map for k in kinds)
    gated = sorted({name for name, k in ATTENTIONS.items() if k.gated})
    uses_gated = any(k.gated for k in kinds)
    for name, value in explicit.items():
        if name in GATED_ONLY:
            if not uses_gated:
                raise ValueError(
                    f"model.linear.{name}={value!r} is read only by the gated kinds {gated}, "
                    f"which no stack uses ({_choices_text(built)}); remove it"
                )
        elif not feature_maps and (name != "chunk_size" or not uses_gated):
            raise ValueError(
                f"model.linear.{name}={value!r} is set, but no stack uses a linear attention "
                f"that reads it ({_choices_text(built)}); remove it, or choose 'linear' / "
                "'causal_linear' for a stack"
            )
    settings = linear_settings(cfg)
    if feature_maps and settings.feature_map != FeatureMap.favor:
        for name in FAVOR_ONLY:
            if name in explicit:
                raise ValueError(
                    f"model.linear.{name}={explicit[name]!r} is read only by "
                    f"model.linear.feature_map='favor', but it is {settings.feature_map!r}; "
                    "remove it"
                )
    if feature_maps:
        check_backend(settings.backend)
    if settings.gate not in GATES:
        raise ValueError(
            f"model.linear.gate={settings.gate!r} is not a gate; choose one of {list(GATES)}"
        )
    if settings.conv_size == 1:
        raise ValueError(
            "model.linear.conv_size=1 is not a convolution over neighbours; use 0 (off) or "
            "at least 2"
        )
    for name, value, least in (
        ("nb_features", settings.nb_features, 1),
        ("chunk_size", 1 if settings.chunk_size is None else settings.chunk_size, 1),
        ("redraw_interval", settings.redraw_interval, 0),
        ("conv_size", settings.conv_size, 0),
    ):
        if value < least:
            raise ValueError(f"model.linear.{name}={value} must be >= {least}")


def _check_rotary(cfg: ModelConfig, layers: dict[str, list[str]]) -> None:
    """Rotary positions turn pairs of columns: of q and k (width Dh) for softmax, of the
    features (width m: Dh for elu and relu) for the linear kinds, which the Triton kernels
    cannot do. Cross-attention is never turned, so only self-attention choices count."""
    if cfg.position != Position.rotary:
        return
    head_dim = cfg.d_model // cfg.heads
    if head_dim % 2:
        even = [
            h
            for h in range(1, cfg.d_model + 1)
            if cfg.d_model % h == 0 and (cfg.d_model // h) % 2 == 0
        ]
        raise ValueError(
            f"model.position='rotary' turns the head width in pairs, but model.d_model="
            f"{cfg.d_model} / model.heads={cfg.heads} = {head_dim} is odd; choose heads among "
            f"{even}, or another model.position"
        )
    rotated = [
        field
        for field, names in layers.items()
        if field.endswith(".self_attention")
        and any(ATTENTIONS[name].uses_feature_map for name in names)
    ]
    if not rotated:
        return
    settings = linear_settings(cfg)
    if settings.feature_map == FeatureMap.favor and settings.nb_features % 2:
        n = settings.nb_features
        valid = f"{n - 1} or {n + 1}" if n > 1 else f"{n + 1}"
        raise ValueError(
            f"model.linear.nb_features={n} is odd, but model.position='rotary' turns the "
            f"features of {rotated[0]} in pairs; choose {valid}"
        )
    if settings.backend == LinearBackend.triton:
        raise ValueError(
            "model.linear.backend='triton' has no rotary form, but model.position='rotary' "
            f"turns the features of {rotated[0]}; choose 'auto' (the torch backend then runs "
            "the rotary layers) or 'torch', or another model.position"
        )
