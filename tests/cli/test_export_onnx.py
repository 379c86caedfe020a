"""seq2seq-export --onnx: the graphs give PyTorch's outputs in onnxruntime.

The classifier's logits match the model's; a decoder's step graph, driven token by token
by onnxruntime from the initial state export.json describes, decodes greedily to the
tokens of the model's own greedy search, with step logits within 1e-4 of a full forward
pass over the decoded sequence. Every causal kind is tried; the kinds that cannot export
are named, one line each, and the other files are written. The CLI path runs on a tiny
trained run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'seq2seq[onnx]')"
)
pytest.importorskip(
    "onnxscript", reason="onnxscript is not installed (pip install 'seq2seq[onnx]')"
)

import onnxruntime

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.greedy import greedy_search
from seq2seq.jobs.export_files import MANIFEST_NAME
from seq2seq.jobs.model_card import onnx_decoding_code
from seq2seq.jobs.onnx_export import write_onnx
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID
from support.tiny_models import VOCAB, continue_on_cpu, linear_settings, tiny_config, tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

PAD, BOS, EOS = PAD_ID, BOS_ID, EOS_ID
MAX_LEN = 12
TOLERANCE = 1e-4
# (decoder self-attention, model.linear settings, other model fields): every causal kind.
DECODERS = {
    "softmax": ("softmax", {}, {}),
    "softmax-rotary": ("softmax", {}, {"position": "rotary"}),
    "causal_linear-elu": ("causal_linear", {"feature_map": "elu"}, {}),
    "causal_linear-favor": ("causal_linear", {"feature_map": "favor"}, {}),
    "causal_linear-favor-rotary": (
        "causal_linear",
        {"feature_map": "favor"},
        {"position": "rotary"},
    ),
    "gated_linear": ("gated_linear", {}, {"position": "learned"}),
    "delta": ("delta", {}, {}),
    "sliding_window": ("sliding_window", {}, {}),
}
ENCODERS = {
    "softmax": ("softmax", {}),
    "linear-elu": ("linear", {"feature_map": "elu"}),
    "linear-favor": ("linear", {"feature_map": "favor"}),
}


def session(path: Path) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def initial_state(manifest: dict[str, Any], batch: int) -> dict[str, np.ndarray]:
    """Zeros of the shapes export.json lists (`batch` filled in)."""
    return {
        entry["name"]: np.zeros(
            [batch if d == "batch" else d for d in entry["shape"]], dtype=entry["dtype"]
        )
        for entry in manifest["initial_state"]
    }


def torch_greedy(model: Any, sources: torch.Tensor, mask: torch.Tensor) -> Any:
    """PyTorch's greedy search over `sources`: what the graphs must reproduce."""
    with torch.no_grad():
        return greedy_search(
            model,
            sources,
            mask,
            GenerationConfig(max_len=MAX_LEN),
            bos_id=BOS,
            eos_id=EOS,
            pad_id=PAD,
        )


def step_feeds(encode: Any, src: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """What the step graph reads of a source: its mask, and the encoder graph's
    cross-attention keys and values (all its outputs but the memory), by name."""
    names = [output.name for output in encode.get_outputs()]
    outputs = encode.run(None, {"src_tokens": src, "src_mask": mask})
    feeds = dict(zip(names, outputs, strict=True))
    del feeds["memory"]
    return {"memory_mask": mask, **feeds}


def onnx_greedy(
    step: Any, manifest: dict[str, Any], feeds: dict[str, np.ndarray], first: int
) -> tuple[list[int], list[np.ndarray]]:
    """Greedy decoding of one row through the step graph, under greedy_search's rules
    (bos and pad never chosen, eos not first, eos forced at MAX_LEN): the tokens without
    eos, and each step's logits."""
    state = initial_state(manifest, 1)
    names = [entry["name"] for entry in manifest["initial_state"]]
    token, tokens, all_logits = first, [], []
    for position in range(MAX_LEN + 1):
        logits, *new = step.run(
            None,
            {
                "tokens": np.array([token], dtype=np.int64),
                "position": np.array([position], dtype=np.int64),
                **feeds,
                **state,
            },
        )
        state = dict(zip(names, new, strict=True))
        all_logits.append(logits[0])
        allowed = logits[0].copy()
        allowed[[PAD, BOS]] = -np.inf
        if position == 0:
            allowed[EOS] = -np.inf
        token = EOS if position == MAX_LEN else int(allowed.argmax())
        if token == EOS:
            break
        tokens.append(token)
    return tokens, all_logits


def export(model: torch.nn.Module, directory: Path) -> dict[str, Any]:
    """write_onnx's manifest entry, with the graphs in `directory`."""
    directory.mkdir(exist_ok=True)
    with torch.no_grad():
        report = write_onnx(model, directory)
    return report.manifest()


# The default suite exports one case of each state form (a KV cache with rotary angles,
# random features, a gated state with its convolution cache); the others are `slow` (each
# graph takes the dynamo exporter several seconds).
DEFAULT_DECODERS = {"softmax-rotary", "causal_linear-favor", "delta"}
DEFAULT_ENCODERS = {"linear-favor"}
DEFAULT_ENCODER_DECODERS = {"softmax"}


def _cases(names: list[str], default: set[str]) -> list[Any]:
    return [pytest.param(name, marks=() if name in default else pytest.mark.slow) for name in names]


@pytest.mark.parametrize("case", _cases(sorted(ENCODERS), DEFAULT_ENCODERS))
def test_classifier_logits_match_pytorch(case: str, tmp_path: Path) -> None:
    kind, linear = ENCODERS[case]
    config = tiny_config(kind="encoder_classifier", encoder=kind, linear=linear)
    model = tiny_model(config, num_classes=3).eval()
    manifest = export(model, tmp_path)
    assert manifest["not_exported"] == []
    graph = session(tmp_path / "model.onnx")
    generator = torch.Generator().manual_seed(1)
    for batch, length in [(1, 3), (4, 17), (2, 40)]:  # none the exporter's example
        tokens = torch.randint(1, VOCAB, (batch, length), generator=generator)
        mask = torch.arange(length)[None, :] < torch.randint(1, length + 1, (batch, 1))
        (got,) = graph.run(None, {"tokens": tokens.numpy(), "mask": mask.numpy()})
        with torch.no_grad():
            expected = model(tokens, mask).numpy()
        assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("case", _cases(sorted(DECODERS), DEFAULT_DECODERS))
def test_language_model_step_graph_decodes_as_pytorch(case: str, tmp_path: Path) -> None:
    kind, linear, fields = DECODERS[case]
    config = tiny_config(kind="decoder_lm", decoder=kind, linear=linear, **fields)
    model = tiny_model(config, seed=3).eval()
    manifest = export(model, tmp_path)
    assert manifest["not_exported"] == []
    assert sorted(manifest["graphs"]) == ["decoder_step.onnx"]
    step = session(tmp_path / "decoder_step.onnx")
    for first in (3, 7, 11):
        tokens, logits = onnx_greedy(step, manifest, {}, first)
        # PyTorch: its own incremental greedy choice ...
        expected: list[int] = []
        with torch.no_grad():
            state = model.init_state()
            token = first
            for position in range(len(logits)):
                scores, state = model.step(torch.tensor([token]), state)
                scores[0, [PAD, BOS]] = -torch.inf
                if position == 0:
                    scores[0, EOS] = -torch.inf
                token = EOS if position == MAX_LEN else int(scores[0].argmax())
                if token == EOS:
                    break
                expected.append(token)
            # ... and a full forward pass over the decoded sequence.
            sequence = torch.tensor([[first, *tokens]])
            full = model(sequence, None)[0, : len(logits)].numpy()
        assert tokens == expected
        assert np.abs(np.stack(logits) - full).max() <= TOLERANCE


def test_the_card_s_python_continues_prompts_as_seq2seq_generate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Learned positions and an untied output layer: an untrained model whose continuations
    # change token by token and with the position (a tied one repeats its input).
    config = tiny_config(
        kind="decoder_lm", decoder="softmax", position="learned", tie_output_embeddings=False
    )
    model = tiny_model(config, seed=4).eval()
    export_dir = tmp_path / "lm"
    manifest = export(model, export_dir)
    (export_dir / MANIFEST_NAME).write_text(json.dumps({"onnx": manifest}), encoding="utf-8")
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)
    exec(compile(onnx_decoding_code("lm", "decoder_lm"), "README.md", "exec"), namespace)
    prompts = [[5, 9, 4], [7]]
    settings = GenerationConfig(max_new_tokens=MAX_LEN)
    expected = continue_on_cpu(model, [[EOS, *prompt] for prompt in prompts], settings)
    for prompt, nbest in zip(prompts, expected, strict=True):
        assert namespace["continue_prompt"](prompt, new_tokens=MAX_LEN) == nbest[0].tokens


@pytest.mark.parametrize(
    "case",
    _cases(["softmax", "causal_linear-favor", "delta", "sliding_window"], DEFAULT_ENCODER_DECODERS),
)
def test_encoder_decoder_graphs_decode_as_greedy_search(case: str, tmp_path: Path) -> None:
    kind, linear, fields = DECODERS[case]
    encoder = "linear" if linear else "softmax"
    config = tiny_config(
        decoder=kind, encoder=encoder, linear=linear_settings(kind, encoder, **linear), **fields
    )
    model = tiny_model(config, seed=5).eval()
    manifest = export(model, tmp_path)
    assert manifest["not_exported"] == []
    assert sorted(manifest["graphs"]) == ["decoder_step.onnx", "encoder.onnx"]
    encode, step = session(tmp_path / "encoder.onnx"), session(tmp_path / "decoder_step.onnx")
    generator = torch.Generator().manual_seed(2)
    lengths = [9, 4, 6]
    sources = torch.randint(3, VOCAB, (len(lengths), max(lengths)), generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    sources = sources.masked_fill(~mask, PAD)
    expected = torch_greedy(model, sources, mask)
    for row, length in enumerate(lengths):
        src, src_mask = sources[row : row + 1, :length].numpy(), mask[row : row + 1, :length]
        feeds = step_feeds(encode, src, src_mask.numpy())
        tokens, logits = onnx_greedy(step, manifest, feeds, BOS)
        assert tokens == expected[row][0].tokens
        with torch.no_grad():
            target = torch.tensor([[BOS, *tokens]])
            full = model(torch.from_numpy(src), src_mask, target, torch.ones_like(target).bool())
        assert np.abs(np.stack(logits) - full[0, : len(logits)].numpy()).max() <= TOLERANCE


def test_kinds_that_do_not_export_are_named_and_the_rest_is_written(tmp_path: Path) -> None:
    """A sliding-window encoder has no graph of any length; its decoder still exports."""
    config = tiny_config(encoder="sliding_window", decoder="softmax")
    manifest = export(tiny_model(config).eval(), tmp_path)
    (line,) = manifest["not_exported"]
    assert line.startswith("not exported: sliding_window: encoder.onnx: ")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["decoder_step.onnx"]
    classifier = tiny_config(kind="encoder_classifier", encoder="sliding_window")
    manifest = export(tiny_model(classifier, num_classes=2).eval(), tmp_path / "classifier")
    assert manifest["not_exported"][0].startswith("not exported: sliding_window: model.onnx: ")
    assert manifest["graphs"] == {}


def test_an_exporter_failure_is_a_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("deep inside the exporter\nand more lines")

    monkeypatch.setattr(torch.onnx, "export", broken)
    manifest = export(tiny_model(tiny_config(kind="decoder_lm")).eval(), tmp_path)
    assert manifest["not_exported"] == [
        "not exported: softmax: decoder_step.onnx: torch.onnx.export failed "
        "(RuntimeError: deep inside the exporter)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_cli_writes_the_graphs_of_a_trained_run(
    tmp_path: Path, train_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = train_run("export-onnx", "experiment=toy_reverse")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "export"
    command = [sys.executable, "-m", "seq2seq.cli.export", str(run_dir), str(out)]
    done = subprocess.run(
        [*command, "--onnx"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"{out}\n"
    assert "not exported" not in done.stderr
    assert "Traceback" not in done.stderr
    # Only our own line: not the exporter's optimizer passes (a hundred INFO lines).
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("exported ")
    ], done.stderr[-2000:]
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert {"encoder.onnx", "decoder_step.onnx"} <= set(manifest["files"])
    onnx = manifest["onnx"]
    assert onnx["not_exported"] == []
    assert [entry["name"] for entry in onnx["initial_state"]] == [
        entry["name"]
        for entry in onnx["graphs"]["decoder_step.onnx"]["inputs"]
        if entry["name"].startswith("state.")
    ]
    # The step reads each layer's cross-attention keys and values from the encoder's graph.
    encoder_outputs = [entry["name"] for entry in onnx["graphs"]["encoder.onnx"]["outputs"]]
    step_inputs = [entry["name"] for entry in onnx["graphs"]["decoder_step.onnx"]["inputs"]]
    assert encoder_outputs == ["memory", "cross.0.k", "cross.0.v", "cross.1.k", "cross.1.v"]
    assert step_inputs[:7] == ["tokens", "position", "memory_mask", *encoder_outputs[1:]]
    # The run's own model, greedy in PyTorch, against the graphs in onnxruntime.
    import seq2seq

    model = seq2seq.load_pretrained(out).model
    encode, step = session(out / "encoder.onnx"), session(out / "decoder_step.onnx")
    sources = torch.tensor([[5, 6, 7, 8], [9, 5, 5, 7]])  # ids of the run's pieces
    mask = torch.ones_like(sources, dtype=torch.bool)
    expected = torch_greedy(model, sources, mask)
    for row in range(2):
        src, src_mask = sources[row : row + 1].numpy(), mask[row : row + 1].numpy()
        feeds = step_feeds(encode, src, src_mask)
        assert onnx_greedy(step, onnx, feeds, BOS)[0] == expected[row][0].tokens
    # The card's own Python (numpy and onnxruntime only), run from the export's parent dir.
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## ONNX" in card and "`decoder_step.onnx`: `tokens` ('batch',)" in card
    code = card.split("## ONNX", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    monkeypatch.chdir(out.parent)
    exec(compile(code, "README.md", "exec"), namespace)
    for row in range(2):
        translated = namespace["translate"](sources[row].tolist(), max_len=MAX_LEN)
        assert translated == expected[row][0].tokens
