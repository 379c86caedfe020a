"""seq2seq-export --onnx: the exported model as ONNX graphs that a runtime decodes with.

    model.onnx          classifier: tokens, mask -> logits
    encoder.onnx        encoder-decoder: src_tokens, src_mask -> memory, cross.*
    decoder_step.onnx   encoder-decoder and language model: one position,
                        tokens, position, [memory_mask, cross.*,] state.* -> logits, next_state.*

The step graph (`seq2seq.model.onnx_step`) takes every layer's state as an input and
returns the new one; an encoder-decoder's step reads each layer's cross-attention keys and
values (`cross.*`), which the encoder's graph projects once per source. A runtime starts
from zeros of the shapes `export.json` lists (`past`, the softmax KV cache's length,
starts at 0 and grows by one per step) and feeds each step's `next_state.*` back as the
next `state.*`.

The graphs come from torch.onnx's dynamo exporter (torch.export, then onnxscript): the
TorchScript exporter has no `rms_norm` (the gated kinds' head norm) and is deprecated.
Each graph is run in onnxruntime against the PyTorch model before it is written (a
classifier batch; a few decoding steps); a graph that fails to export or to match is left
out, and its attention kinds are named, one line each: `not exported: <kind>: <reason>`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seq2seq.model import DecoderLanguageModel, EncoderClassifier, EncoderDecoderTransformer
from seq2seq.model.attention import ATTENTIONS, MultiHeadAttention
from seq2seq.model.attention.sliding_window import SlidingWindowAttention
from seq2seq.model.layer import PerformerLayer
from seq2seq.model.onnx_step import (
    BATCH,
    PAST,
    SOURCE,
    DecoderStepGraph,
    EncoderGraph,
    NotExportable,
    StateSpec,
    cross_specs,
)
from seq2seq.model.stack import LayerStack

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
TOLERANCE = 1e-4
"""Largest difference of onnxruntime's outputs from PyTorch's that a written graph shows."""
CHECK_STEPS = 4
"""Decoding steps the step graph is checked for before it is written."""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def missing_packages() -> list[str]:
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def check_onnx_packages() -> None:
    """Refuse `--onnx` up front when the exporter or the runtime is not installed."""
    missing = missing_packages()
    if missing:
        raise ValueError(
            f"--onnx needs the packages {', '.join(missing)}; install them with "
            "pip install 'seq2seq[onnx]'"
        )


@dataclass
class OnnxExport:
    """What `write_onnx` wrote, for the manifest, and the lines naming what it left out."""

    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)
    initial_state: list[dict[str, Any]] = field(default_factory=list)
    not_exported: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "exporter": f"torch.onnx (dynamo) {torch.__version__}",
            "graphs": self.graphs,
            "initial_state": self.initial_state,
            "not_exported": self.not_exported,
        }


def _kind_names(modules: Iterator[nn.Module]) -> list[str]:
    """Registry names of the attention kinds among `modules`, in order, once each."""
    by_class = {kind: name for name, kind in ATTENTIONS.items()}
    names: list[str] = []
    for module in modules:
        if isinstance(module, MultiHeadAttention):
            name = by_class.get(type(module.attention), type(module.attention).__name__)
            if name not in names:
                names.append(name)
    return names


def _stack_layers(stack: LayerStack) -> list[PerformerLayer]:
    return [layer for layer in stack.layers if isinstance(layer, PerformerLayer)]


def _refuse_banded_encoder(stack: LayerStack) -> None:
    for layer in _stack_layers(stack):
        if isinstance(layer.self_attention.attention, SlidingWindowAttention):
            raise NotExportable(
                "its whole-sequence form picks a banded product (L <= 2W) or a blocked 5-D "
                "one (longer) by the length, which one graph of any length cannot hold, and "
                "ONNX attention takes 4-D inputs only"
            )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings stay off the CLI's output: torch's and
    those of the optimizer passes it runs (onnxscript, onnx_ir: a hundred INFO lines a
    graph under the CLI's INFO logging)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _io_entry(name: str, shape: Sequence[int | str], dtype: str) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "dtype": dtype}


def _spec_dims(spec: StateSpec, dims: dict[str, Any]) -> dict[int, Any]:
    """torch.export's dynamic shapes of `spec`: its named axes as the `Dim`s of `dims`."""
    return {i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str)}


def _failure(error: BaseException) -> str:
    """One line for an exporter's error: the first line of its innermost cause (the
    exporter wraps the real one in pages of advice), without terminal colours."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    lines = [line.strip() for line in ANSI.sub("", str(error)).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"torch.onnx.export failed ({type(error).__name__}{': ' + text if text else ''})"


def _session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _difference(expected: Tensor, got: np.ndarray) -> float:
    return float(np.abs(expected.detach().numpy() - got).max(initial=0.0))


class _Writer:
    """Exports, checks and records the graphs of one model into `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.report = OnnxExport()
        self.generator = torch.Generator().manual_seed(0)

    def graph(
        self,
        name: str,
        kinds: Sequence[str],
        build: Callable[[], tuple[nn.Module, tuple[Any, ...], Any, list[str], list[str]]],
        check: Callable[[Any], float],
    ) -> bool:
        """Export `build()`'s module as `name` and check it with `check(session)` (the
        largest difference from PyTorch); on any failure the graph is removed and each of
        `kinds` gets its line."""
        path = self.directory / name
        try:
            module, args, dynamic_shapes, inputs, outputs = build()
            with _quiet(), torch.no_grad():
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_shapes=dynamic_shapes,
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
            with torch.no_grad():
                difference = check(_session(path))
            if not difference <= TOLERANCE:
                raise NotExportable(
                    f"onnxruntime's outputs differ from PyTorch's by {difference:.3g} "
                    f"(more than {TOLERANCE:g})"
                )
        except Exception as error:  # anything the exporter raises leaves this graph out
            path.unlink(missing_ok=True)
            reason = str(error) if isinstance(error, NotExportable) else _failure(error)
            self.report.not_exported += [
                f"not exported: {kind}: {name}: {reason}" for kind in kinds
            ]
            return False
        return True

    def tokens(self, vocab: int, batch: int, length: int) -> tuple[Tensor, Tensor]:
        """Random tokens `(B, L)` and a mask with the second row padded after half."""
        tokens = torch.randint(0, vocab, (batch, length), generator=self.generator)
        mask = torch.ones(batch, length, dtype=torch.bool)
        mask[1:, (length + 1) // 2 :] = False
        return tokens, mask


def _classifier(writer: _Writer, model: EncoderClassifier) -> None:
    from torch.export import Dim

    vocab = model.encoder.embedding.num_embeddings

    def build() -> tuple[nn.Module, tuple[Any, ...], Any, list[str], list[str]]:
        _refuse_banded_encoder(model.encoder)
        batch, length = Dim(BATCH), Dim("length")
        shapes = ({0: batch, 1: length}, {0: batch, 1: length})
        return model, writer.tokens(vocab, 2, 5), shapes, ["tokens", "mask"], ["logits"]

    def check(session: Any) -> float:
        tokens, mask = writer.tokens(vocab, 3, 9)
        got = session.run(None, {"tokens": tokens.numpy(), "mask": mask.numpy()})[0]
        return _difference(model(tokens, mask), got)

    if writer.graph("model.onnx", _kind_names(model.encoder.modules()), build, check):
        writer.report.graphs["model.onnx"] = {
            "inputs": [
                _io_entry("tokens", [BATCH, "length"], "int64"),
                _io_entry("mask", [BATCH, "length"], "bool"),
            ],
            "outputs": [_io_entry("logits", [BATCH, model.head.out_features], "float32")],
        }


def _encoder(writer: _Writer, model: EncoderDecoderTransformer) -> None:
    from torch.export import Dim

    vocab = model.encoder.embedding.num_embeddings
    width = model.encoder.embedding.embedding_dim
    cross = cross_specs(model.decoder)

    def build() -> tuple[nn.Module, tuple[Any, ...], Any, list[str], list[str]]:
        _refuse_banded_encoder(model.encoder)
        batch, length = Dim(BATCH), Dim(SOURCE)
        shapes = ({0: batch, 1: length}, {0: batch, 1: length})
        args = writer.tokens(vocab, 2, 5)
        outputs = ["memory", *[spec.name for spec in cross]]
        return EncoderGraph(model), args, shapes, ["src_tokens", "src_mask"], outputs

    def check(session: Any) -> float:
        tokens, mask = writer.tokens(vocab, 3, 9)
        got = session.run(None, {"src_tokens": tokens.numpy(), "src_mask": mask.numpy()})
        expected = EncoderGraph(model)(tokens, mask)
        return max(_difference(e, g) for e, g in zip(expected, got, strict=True))

    if writer.graph("encoder.onnx", _kind_names(model.encoder.modules()), build, check):
        writer.report.graphs["encoder.onnx"] = {
            "inputs": [
                _io_entry("src_tokens", [BATCH, SOURCE], "int64"),
                _io_entry("src_mask", [BATCH, SOURCE], "bool"),
            ],
            "outputs": [
                _io_entry("memory", [BATCH, SOURCE, width], "float32"),
                *[_io_entry(spec.name, spec.shape, spec.dtype) for spec in cross],
            ],
        }


def _decoder_step(writer: _Writer, model: EncoderDecoderTransformer | DecoderLanguageModel) -> None:
    from torch.export import Dim

    cross = isinstance(model, EncoderDecoderTransformer)
    decoder = model.decoder
    vocab = decoder.embedding.num_embeddings
    cross_kv = cross_specs(decoder) if cross else []
    steps: list[DecoderStepGraph] = []

    def build() -> tuple[nn.Module, tuple[Any, ...], Any, list[str], list[str]]:
        graph = DecoderStepGraph(decoder, cross=cross).eval()
        steps.append(graph)
        dims = {BATCH: Dim(BATCH), PAST: Dim(PAST, min=0), SOURCE: Dim(SOURCE)}
        # An example mid-sequence (a past of 3, a source of 5), so no axis is fixed at 0 or 1.
        sizes = {BATCH: 2, PAST: 3, SOURCE: 5}
        inputs = ["tokens", "position"]
        args: list[Any] = [writer.tokens(vocab, 2, 1)[0][:, 0], torch.tensor([3])]
        rest: list[Any] = []  # the shapes of `forward`'s *rest, one tuple for torch.export
        if cross:
            inputs.append("memory_mask")
            args.append(torch.ones(2, 5, dtype=torch.bool))
            rest.append({0: dims[BATCH], 1: dims[SOURCE]})
        for spec in [*cross_kv, *graph.state_specs]:
            inputs.append(spec.name)
            args.append(torch.zeros([d if isinstance(d, int) else sizes[d] for d in spec.shape]))
            rest.append(_spec_dims(spec, dims))
        specs = graph.state_specs
        outputs = ["logits", *[f"next_{spec.name}" for spec in specs]]
        return graph, tuple(args), [{0: dims[BATCH]}, None, tuple(rest)], inputs, outputs

    def check(session: Any) -> float:
        graph = steps[-1]
        state: Any
        feeds: dict[str, np.ndarray] = {}
        if isinstance(model, EncoderDecoderTransformer):
            src, memory_mask = writer.tokens(model.encoder.embedding.num_embeddings, 3, 7)
            memory, *keys_values = EncoderGraph(model)(src, memory_mask)
            state = model.init_state(memory, memory_mask)
            feeds = {"memory_mask": memory_mask.numpy()}
            feeds |= {spec.name: t.numpy() for spec, t in zip(cross_kv, keys_values, strict=True)}
        else:
            state = model.init_state()
        tokens = writer.tokens(vocab, 3, CHECK_STEPS)[0]
        names = [spec.name for spec in graph.state_specs]
        values = [tensor.numpy() for tensor in graph.initial_states(3)]
        worst = 0.0
        for position in range(CHECK_STEPS):
            expected, state = model.step(tokens[:, position], state)
            got = session.run(
                None,
                {
                    "tokens": tokens[:, position].numpy(),
                    "position": np.array([position], dtype=np.int64),
                    **feeds,
                    **dict(zip(names, values, strict=True)),
                },
            )
            values = got[1:]
            worst = max(worst, _difference(expected, got[0]))
        return worst

    if not writer.graph("decoder_step.onnx", _kind_names(decoder.modules()), build, check):
        return
    specs = steps[-1].state_specs
    inputs = [_io_entry("tokens", [BATCH], "int64"), _io_entry("position", [1], "int64")]
    if cross:
        inputs.append(_io_entry("memory_mask", [BATCH, SOURCE], "bool"))
        inputs += [_io_entry(spec.name, spec.shape, spec.dtype) for spec in cross_kv]
    states = [_io_entry(spec.name, spec.shape, spec.dtype) for spec in specs]
    writer.report.graphs["decoder_step.onnx"] = {
        "inputs": inputs + states,
        "outputs": [
            _io_entry("logits", [BATCH, vocab], "float32"),
            *[_io_entry(f"next_{spec.name}", spec.shape, spec.dtype) for spec in specs],
        ],
        "max_positions": decoder.positions.max_len,
    }
    writer.report.initial_state = [
        _io_entry(spec.name, [0 if d == PAST else d for d in spec.shape], spec.dtype)
        for spec in specs
    ]


def write_onnx(model: nn.Module, directory: Path) -> OnnxExport:
    """Write the ONNX graphs of `model` (in eval mode, on the CPU) into `directory`."""
    writer = _Writer(directory)
    model = model.eval()
    if isinstance(model, EncoderClassifier):
        _classifier(writer, model)
    elif isinstance(model, EncoderDecoderTransformer):
        _encoder(writer, model)
        _decoder_step(writer, model)
    elif isinstance(model, DecoderLanguageModel):
        _decoder_step(writer, model)
    else:
        raise ValueError(f"--onnx has no graphs for a {type(model).__name__}")
    return writer.report
