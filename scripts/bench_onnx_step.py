"""The ONNX step graph of seq2seq-export --onnx against the PyTorch step, per attention kind.

Builds a decoder-only language model of each causal kind (untrained: the timing does not
depend on the weights), writes its `decoder_step.onnx` with `write_onnx`, decodes both to
position `--position` (512), then times one step there, onnxruntime and PyTorch alternated
in the same process, one thread each; then the same for an encoder-decoder (softmax, a
source of `--source` tokens), whose step also reads the encoder graph's cross-attention
keys and values. Prints milliseconds per token and the ratio PyTorch / ONNX (above 1: the
graph is faster); writes JSON.

    python scripts/bench_onnx_step.py
    python scripts/bench_onnx_step.py --d-model 256 --layers 6 --position 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from seq2seq.config.model import DecoderConfig, EncoderConfig, LinearAttentionConfig, ModelConfig
from seq2seq.jobs.onnx_export import write_onnx
from seq2seq.model import DecoderLanguageModel, EncoderDecoderTransformer, build_model

KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "softmax": ("softmax", {}),
    "causal_linear (elu)": ("causal_linear", {"feature_map": "elu"}),
    "causal_linear (favor)": ("causal_linear", {"feature_map": "favor"}),
    "gated_linear": ("gated_linear", {}),
    "delta": ("delta", {}),
    "sliding_window": ("sliding_window", {}),
}


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


ENCODER_DECODER = "encoder-decoder, softmax"


def build(kind: str, linear: dict[str, Any], args: argparse.Namespace, *, lm: bool) -> Any:
    """A decoder-only LM of `kind`, or (`lm` false) an encoder-decoder of `kind` layers."""
    config = ModelConfig(
        d_model=args.d_model,
        heads=args.heads,
        d_ff=4 * args.d_model,
        dropout=0.0,
        max_len=args.position + 8,
        encoder=EncoderConfig(layers=1 if lm else args.layers),
        decoder=DecoderConfig(layers=args.layers, self_attention=kind),
        linear=LinearAttentionConfig(**linear),
        window=args.window if kind == "sliding_window" else None,
    )
    model = build_model(
        config,
        kind="decoder_lm" if lm else "encoder_decoder",
        src_vocab_size=args.vocab,
        tgt_vocab_size=args.vocab,
        pad_id=0,
    )
    assert isinstance(model, DecoderLanguageModel if lm else EncoderDecoderTransformer)
    return model.eval()


def _session(path: Path) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def row(
    name: str, kind: str, linear: dict[str, Any], args: argparse.Namespace, *, lm: bool = True
) -> dict[str, Any]:
    model = build(kind, linear, args, lm=lm)
    source: dict[str, np.ndarray] = {}
    generator = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        report = write_onnx(model, Path(directory))
        if report.not_exported:
            return {"kind": name, "not_exported": report.not_exported}
        session = _session(Path(directory) / "decoder_step.onnx")
        if not lm:  # what the step reads of a source, from the encoder's graph
            encoder = _session(Path(directory) / "encoder.onnx")
            src = torch.randint(4, args.vocab, (1, args.source), generator=generator)
            mask = torch.ones_like(src, dtype=torch.bool)
            names = [output.name for output in encoder.get_outputs()]
            outputs = encoder.run(None, {"src_tokens": src.numpy(), "src_mask": mask.numpy()})
            encoded = dict(zip(names, outputs, strict=True))
            source = {"memory_mask": mask.numpy()}
            source |= {i.name: encoded[i.name] for i in session.get_inputs() if i.name in encoded}
    manifest = report.manifest()
    names = [entry["name"] for entry in manifest["initial_state"]]
    states = [
        np.zeros([1 if d == "batch" else d for d in entry["shape"]], dtype=entry["dtype"])
        for entry in manifest["initial_state"]
    ]
    tokens = torch.randint(4, args.vocab, (args.position + 1,), generator=generator)
    with torch.no_grad():
        state = model.init_state() if lm else model.init_state(model.encode(src, mask), mask)
    with torch.no_grad():
        for position in range(args.position):
            _, state = model.step(tokens[position : position + 1], state)
            _, *states = session.run(
                None,
                {
                    "tokens": tokens[position : position + 1].numpy(),
                    "position": np.array([position], dtype=np.int64),
                    **source,
                    **dict(zip(names, states, strict=True)),
                },
            )
        feeds = {
            "tokens": tokens[args.position : args.position + 1].numpy(),
            "position": np.array([args.position], dtype=np.int64),
            **source,
            **dict(zip(names, states, strict=True)),
        }
        token = tokens[args.position : args.position + 1]
        onnx_ms, torch_ms = [], []
        for _ in range(args.rounds):  # alternated, so both see the same machine load
            onnx_ms.append(median_ms(lambda: session.run(None, feeds), args.repeats))
            torch_ms.append(median_ms(lambda: model.step(token, state), args.repeats))
    onnx, eager = statistics.median(onnx_ms), statistics.median(torch_ms)
    return {"kind": name, "onnx_ms": onnx, "torch_ms": eager, "torch_over_onnx": eager / onnx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--position", type=int, default=512)
    parser.add_argument(
        "--source", type=int, default=64, help="the encoder-decoder's source (0: no such row)"
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--output", type=Path, default=Path("bench_onnx_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row(name, *KINDS[name], args) for name in args.kinds]
    if args.source:
        rows.append(row(ENCODER_DECODER, "softmax", {}, args, lm=False))
    print(f"one step at position {args.position}, batch 1, one thread (ms per token)")
    print(f"{'kind':<24}{'onnxruntime':>12}{'pytorch':>10}{'pytorch/onnx':>14}")
    for entry in rows:
        if "not_exported" in entry:
            print(f"{entry['kind']:<24}{'; '.join(entry['not_exported'])}")
            continue
        print(
            f"{entry['kind']:<24}{entry['onnx_ms']:>12.3f}{entry['torch_ms']:>10.3f}"
            f"{entry['torch_over_onnx']:>13.2f}x"
        )
    settings = {key: value for key, value in vars(args).items() if key != "output"}
    args.output.write_text(
        json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
