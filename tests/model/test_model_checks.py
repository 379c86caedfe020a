"""Bad model settings and combinations fail in the config layer's `check_model`, naming
field, value and what is valid; harmless ones (linear settings left unset on softmax) pass
and build. Unknown choices (an attention kind, a norm ...) fail at composition instead:
tests/config/test_choices.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from seq2seq.model.attention import (
    ATTENTIONS,
    CausalLinearAttention,
    EluFeatureMap,
    FavorFeatureMap,
    MultiHeadAttention,
    ReluFeatureMap,
    SoftmaxAttention,
)
from seq2seq.model.attention.gated import GatedAttention
from seq2seq.model.checks import check_model
from seq2seq.model.norms import PostNormResidual, PreNormResidual, Residual
from support.attention_cases import BIDIRECTIONAL, CAUSAL

CAUSAL_LISTED = re.escape(str(CAUSAL))
BIDIRECTIONAL_LISTED = re.escape(str(BIDIRECTIONAL))

BAD = [
    pytest.param(
        {"decoder": "linear"},
        rf"model\.decoder\.self_attention='linear' is not causal.*{CAUSAL_LISTED}",
        id="non-causal-decoder-self",
    ),
    pytest.param(
        {"kind": "decoder_lm", "decoder": "linear"},
        rf"model\.decoder\.self_attention='linear' is not causal.*{CAUSAL_LISTED}",
        id="non-causal-lm-self",
    ),
    pytest.param(
        {"encoder": "causal_linear"},
        rf"model\.encoder\.self_attention='causal_linear' is causal-only.*{BIDIRECTIONAL_LISTED}",
        id="causal-linear-encoder",
    ),
    pytest.param(
        {"kind": "encoder_classifier", "encoder": "causal_linear"},
        rf"model\.encoder\.self_attention='causal_linear' is causal-only.*{BIDIRECTIONAL_LISTED}",
        id="causal-linear-classifier",
    ),
    pytest.param(
        {"cross": "causal_linear"},
        rf"model\.decoder\.cross_attention='causal_linear' is causal-only.*{BIDIRECTIONAL_LISTED}",
        id="causal-linear-cross",
    ),
    pytest.param(
        {"norm": "rezero", "norm_position": "post"},
        r"model\.norm_position='post' is not available with model\.norm='rezero'; choose 'pre'",
        id="post-rezero",
    ),
    pytest.param(
        {"d_model": 30, "heads": 4},
        r"model\.d_model=30 is not divisible by model\.heads=4.*\[1, 2, 3, 5, 6, 10, 15, 30\]",
        id="heads-do-not-divide",
    ),
    *(
        pytest.param(
            {"linear": {setting: value}},
            rf"model\.linear\.{setting}={re.escape(repr(value))} is set, but no stack uses a "
            r"linear attention.*model\.encoder\.self_attention='softmax'",
            id=f"linear-{setting}-on-softmax",
        )
        for setting, value in [
            ("feature_map", "favor"),
            ("nb_features", 64),
            ("redraw_interval", 0),
            ("chunk_size", 32),
        ]
    ),
    pytest.param(
        {"kind": "decoder_lm", "cross": "linear", "linear": {"feature_map": "elu"}},
        r"model\.linear\.feature_map='elu' is set, but no stack uses a linear attention",
        id="linear-setting-unused-cross",
    ),
    *(
        pytest.param(
            {"encoder": "linear", "linear": {"feature_map": feature_map, setting: value}},
            rf"model\.linear\.{setting}={value} is read only by model\.linear\.feature_map="
            rf"'favor', but it is '{feature_map}'; remove it",
            id=f"{setting}-with-{feature_map}",
        )
        for feature_map, setting, value in [
            ("elu", "nb_features", 8),
            ("relu", "redraw_interval", 5),
        ]
    ),
    pytest.param(
        {
            "encoder": "linear",
            "decoder": "causal_linear",
            "cross": "linear",
            "attention_dropout": 0.1,
        },
        r"model\.attention_dropout=0\.1 is read only by softmax attention, which no stack uses "
        r"\(model\.encoder\.self_attention='linear', .*\); remove it",
        id="attention-dropout-without-softmax",
    ),
    pytest.param(
        {"position": "rotary", "d_model": 30, "heads": 2},
        r"model\.position='rotary' turns the head width in pairs, but model\.d_model=30 / "
        r"model\.heads=2 = 15 is odd; choose heads among \[1, 3, 5, 15\]",
        id="rotary-odd-head-width",
    ),
    pytest.param(
        {"position": "rotary", "decoder": "causal_linear", "linear": {"nb_features": 7}},
        r"model\.linear\.nb_features=7 is odd, but model\.position='rotary' turns the features "
        r"of model\.decoder\.self_attention in pairs; choose 6 or 8",
        id="rotary-odd-features",
    ),
    pytest.param(
        {"position": "rotary", "encoder": "linear", "linear": {"backend": "triton"}},
        r"model\.linear\.backend='triton' has no rotary form, but model\.position='rotary' "
        r"turns the features of model\.encoder\.self_attention; choose 'auto'",
        id="rotary-triton",
    ),
]


@pytest.mark.parametrize(("fields", "match"), BAD)
def test_bad_configuration_fails_before_building(
    make_config: Callable[..., Any],
    make_model: Callable[..., Any],
    fields: dict[str, Any],
    match: str,
) -> None:
    cfg = make_config(**fields)
    with pytest.raises(ValueError, match=match):
        check_model(cfg, kind=cfg.kind)


@pytest.mark.parametrize("kind", ["decoder_lm", "encoder_classifier"])
def test_share_embeddings_needs_the_encoder_decoder(
    make_config: Callable[..., Any], kind: str
) -> None:
    cfg = make_config(kind=kind, share_embeddings=True)
    with pytest.raises(ValueError, match=rf"model\.share_embeddings=true .*\({kind}\) has one"):
        check_model(cfg, kind=cfg.kind)


def test_shared_embeddings_are_one_module(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> None:
    model = make_model(make_config(share_embeddings=True))
    assert model.encoder.embedding is model.decoder.embedding
    assert model.decoder.output.weight is model.decoder.embedding.weight


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="all-softmax-linear-unset"),
        pytest.param(
            {"encoder": "linear", "linear": {"feature_map": "favor", "nb_features": 8}},
            id="linear-encoder",
        ),
        pytest.param(
            {"decoder": "causal_linear", "linear": {"chunk_size": 2, "redraw_interval": 0}},
            id="causal-linear",
        ),
        pytest.param({"cross": "linear", "linear": {"feature_map": "elu"}}, id="linear-cross"),
        pytest.param(
            {"kind": "encoder_classifier", "decoder": "linear"}, id="unused-decoder-choice"
        ),
        pytest.param({"norm": "layernorm", "norm_position": "post"}, id="post-layernorm"),
        pytest.param({"norm": "rmsnorm", "norm_position": "post"}, id="post-rmsnorm"),
        pytest.param(
            # Only self-attention is turned: odd features serve the cross-attention.
            {"position": "rotary", "cross": "linear", "linear": {"nb_features": 7}},
            id="rotary-softmax-self-linear-cross",
        ),
        pytest.param(
            {"encoder": "linear", "decoder": "causal_linear", "attention_dropout": 0.1},
            id="attention-dropout-on-the-softmax-cross-attention",
        ),
    ],
)
def test_good_configuration_builds_what_it_names(
    make_config: Callable[..., Any], make_model: Callable[..., Any], fields: dict[str, Any]
) -> None:
    """The built model holds the configured attention kind in every layer (and no
    decoder when it has no use for one), with the configured feature map, feature
    count (default int(Dh ln Dh) = 16 at Dh=8), chunk size (default 64) and attention
    dropout, and the post-norm residual when asked for."""
    cfg = make_config(**fields)
    check_model(cfg, kind=cfg.kind)
    model = make_model(cfg, num_classes=2)

    wanted = {"encoder": {"self_attention": cfg.encoder.self_attention}}
    if cfg.kind == "encoder_decoder":
        wanted["decoder"] = {
            "self_attention": cfg.decoder.self_attention,
            "cross_attention": cfg.decoder.cross_attention,
        }
    linear = cfg.linear
    feature_maps = {"favor": FavorFeatureMap, "elu": EluFeatureMap, "relu": ReluFeatureMap}
    found = 0
    for name, module in model.named_modules():
        if not isinstance(module, MultiHeadAttention):
            continue
        stack, _, index, sublayer = name.split(".")
        assert int(index) < 2 and type(module.attention) is ATTENTIONS[wanted[stack][sublayer]]
        kernel = module.attention
        found += 1
        if isinstance(kernel, SoftmaxAttention):
            assert kernel.dropout == cfg.attention_dropout, name
            continue
        if isinstance(kernel, GatedAttention):
            assert kernel.chunk_size == (linear.chunk_size or 32), name
            continue
        feature_map = kernel.feature_map
        assert isinstance(feature_map, feature_maps[linear.feature_map or "favor"]), name
        if isinstance(feature_map, FavorFeatureMap):
            assert feature_map.num_features == (linear.nb_features or 16), name
        if isinstance(kernel, CausalLinearAttention):
            assert kernel.chunk_size == (linear.chunk_size or 64), name
    assert found == 2 * sum(len(sublayers) for sublayers in wanted.values())
    residuals = {type(module) for module in model.modules() if isinstance(module, Residual)}
    assert residuals == ({PostNormResidual} if cfg.norm_position == "post" else {PreNormResidual})


@pytest.mark.parametrize("setting", ["nb_features", "chunk_size"])
def test_explicit_zero_linear_setting_fails(make_config: Callable[..., Any], setting: str) -> None:
    cfg = make_config(encoder="linear", decoder="causal_linear", linear={setting: 0})
    with pytest.raises(ValueError, match=rf"model\.linear.*{setting}"):
        check_model(cfg, kind=cfg.kind)


@pytest.mark.parametrize(
    ("kind", "unbuilt"), [("decoder_lm", "encoder"), ("encoder_classifier", "decoder")]
)
def test_the_depth_of_a_stack_the_kind_does_not_build_is_not_checked(
    make_config: Callable[..., Any], make_model: Callable[..., Any], kind: str, unbuilt: str
) -> None:
    cfg = make_config(kind=kind)
    getattr(cfg, unbuilt).layers = 0
    check_model(cfg, kind=cfg.kind)
    assert not hasattr(make_model(cfg, num_classes=2), unbuilt)
    built = "decoder" if unbuilt == "encoder" else "encoder"
    getattr(cfg, built).layers = 0
    with pytest.raises(ValueError, match=rf"model\.{built}\.layers=0 must be at least 1"):
        check_model(cfg, kind=cfg.kind)
