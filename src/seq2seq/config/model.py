"""Schema of the `model` config node. Every field is documented here, once."""

from __future__ import annotations

from dataclasses import dataclass, field

from seq2seq.config.choice import Choice


class Norm(Choice):
    layernorm = "layernorm"
    rmsnorm = "rmsnorm"
    rezero = "rezero"
    prescalenorm = "prescalenorm"


class NormPosition(Choice):
    pre = "pre"
    post = "post"


class Activation(Choice):
    gelu = "gelu"
    relu = "relu"
    silu = "silu"
    swiglu = "swiglu"
    geglu = "geglu"
    reglu = "reglu"


class Position(Choice):
    sinusoidal = "sinusoidal"
    learned = "learned"
    rotary = "rotary"


class FeatureMap(Choice):
    favor = "favor"
    elu = "elu"
    relu = "relu"


class LinearBackend(Choice):
    auto = "auto"
    torch = "torch"
    triton = "triton"


class Pooling(Choice):
    mean = "mean"
    cls = "cls"
    max = "max"


def layer_schedule(value: str, layers: int, *, field: str) -> list[str]:
    """The attention kind of each of `layers` layers that the setting `field` = `value`
    names: one kind for every layer (`softmax`), or kinds joined by `+`, each repeated `*N`
    times if given, in layer order (`delta*3+softmax`: three delta layers, then softmax).
    A schedule shorter than the stack repeats to fill it (its length must divide `layers`):
    `delta*3+softmax` with 8 layers is that pattern twice. Names are checked against the
    registry elsewhere (`seq2seq.model.checks`)."""
    kinds: list[str] = []
    for part in value.split("+"):
        name, star, count = part.strip().partition("*")
        if not name.strip() or (star and not count.strip().isdigit()) or count.strip() == "0":
            raise ValueError(
                f"{field}={value!r} is not a schedule of attention kinds; write one kind "
                "(softmax), or kinds joined by '+', each optionally repeated with '*N' "
                "(delta*3+softmax)"
            )
        kinds += [name.strip()] * (int(count) if star else 1)
    if layers % len(kinds):
        stack = field.rsplit(".", 1)[0]
        raise ValueError(
            f"{field}={value!r} names {len(kinds)} layers, which does not divide "
            f"{stack}.layers={layers}; give one kind per layer, or a pattern that repeats "
            "to fill the stack"
        )
    return kinds * (layers // len(kinds))


@dataclass
class EncoderConfig:
    layers: int = 3
    """Number of encoder layers."""
    self_attention: str = "softmax"
    """Encoder self-attention: a kind of `seq2seq.model.attention.ATTENTIONS` that attends
    in both directions (`softmax`, `linear`), or one per layer (`layer_schedule`)."""


@dataclass
class DecoderConfig:
    layers: int = 3
    """Number of decoder layers."""
    self_attention: str = "softmax"
    """Decoder (causal) self-attention: a causal kind (`softmax`, `causal_linear`, ...), or
    one per layer (`layer_schedule`)."""
    cross_attention: str = "softmax"
    """Attention over the encoder output: `softmax` or `linear`, or one per layer."""


@dataclass
class LinearAttentionConfig:
    """Settings of the linear kinds. None means the default; they are ignored when no kind
    that reads them is chosen, and setting one explicitly then is an error."""

    feature_map: FeatureMap | None = None
    """`favor` (FAVOR+ random features, default), `elu` (elu+1) or `relu`."""
    nb_features: int | None = None
    """FAVOR+ feature count m; default int(Dh * ln(Dh)) as in the Performer paper, rounded up
    to even under `model.position=rotary` (which turns the features in pairs; an odd m set
    here is then an error)."""
    redraw_interval: int | None = None
    """Optimizer steps between FAVOR+ redraws (default 1000; 0 never redraws)."""
    chunk_size: int | None = None
    """Chunk length C of the chunked parallel algorithms: `causal_linear`'s `torch` backend
    (default 64; the `triton` kernels use tiles of their own) and the gated kinds (default
    32)."""
    backend: LinearBackend | None = None
    """What runs the linear kinds' forward and backward passes: `auto` (default: `triton` for
    CUDA tensors where triton is installed, `torch` everywhere else), `torch` (the chunked
    PyTorch path, any device; it recomputes the features in backward rather than saving
    them) or `triton` (fused kernels that form the features on chip; CUDA only, or CPU
    tensors under Triton's interpreter, TRITON_INTERPRET=1, for tests). The two agree to
    float32 rounding (about 1e-5); decoding steps always run in PyTorch."""
    gate: str | None = None
    """The gated kinds' (`gated_linear`, `delta`) forget gate: `data` (default; Mamba-2's
    data-dependent decay per head and position), `fixed` (RetNet's constant decay per
    head) or `none` (no decay; `delta` is then plain DeltaNet)."""
    conv_size: int | None = None
    """The gated kinds' short causal depthwise convolution over q, k and v: its kernel
    (default 4, as Mamba-2 and Gated DeltaNet use); 0 turns it off."""
    output_gate: bool | None = None
    """The gated kinds' output gate, `attn(x) * silu(W_g x)` before the output projection
    (default true)."""


@dataclass
class ModelConfig:
    d_model: int = 256
    """Model width D."""
    heads: int = 4
    """Attention heads H; must divide d_model."""
    d_ff: int = 1024
    """Hidden width of the feed-forward."""
    dropout: float = 0.1
    """Dropout on embeddings, residual branches and the feed-forward hidden layer."""
    attention_dropout: float = 0.0
    """Dropout on softmax attention probabilities (`softmax`, `sliding_window`)."""
    window: int | None = None
    """Keys a `sliding_window` layer attends: the last W up to its own position, or, in
    both directions, those fewer than W positions away (default 256; read only by
    `sliding_window`)."""
    norm: Norm = Norm.layernorm
    """Residual scheme: `layernorm`, `rmsnorm`, `rezero` or `prescalenorm` (set through the
    `norm` group)."""
    norm_position: NormPosition = NormPosition.pre
    """`pre` or `post`; `post` exists for `layernorm` and `rmsnorm` only."""
    activation: Activation = Activation.gelu
    """`gelu`, `relu`, `silu`, or the gated `swiglu`, `geglu`, `reglu`."""
    position: Position = Position.sinusoidal
    """Positions: `sinusoidal` or `learned`, added to the embeddings; or `rotary` (RoFormer):
    nothing added, the queries and keys of self-attention turned by their positions instead
    (for the linear kinds, their features in the numerator only; see
    `model/attention/rotary.py`). Cross-attention is never turned. `rotary` needs an even
    head width d_model / heads; the linear kinds then run on the `torch` backend."""
    max_len: int = 512
    """Longest sequence (source or target, with bos/eos) the positions cover."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    linear: LinearAttentionConfig = field(default_factory=LinearAttentionConfig)
    tie_output_embeddings: bool = True
    """Tie the decoder's input embedding and output projection."""
    share_embeddings: bool = False
    """One embedding for source and target; needs a shared vocabulary (`tokenizer.shared`)."""
    pooling: Pooling = Pooling.mean
    """Classifier pooling: `mean` or `max` over the real tokens, or `cls`: the output at
    the first token (a bos token the classification task puts first)."""
