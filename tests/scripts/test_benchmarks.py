"""The benchmark scripts run end to end at toy sizes and report their targets (the figures
themselves are measured by hand, never asserted in tests)."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_attention_reports_every_kind_and_the_cpu_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "attention.json"
    _script("bench_attention").main(
        shlex.split(
            "--lengths 32 --heads 2 --head-dim 8 --repeats 1 --warmup 0 --chunk-size 8 "
            f"--json {out}"
        )
    )
    printed = capsys.readouterr().out
    for line in (
        "target causal_linear/favor: memory <= 2x sdpa_causal's at L=4096 on cpu: not run",
        "target causal_linear/elu: <= 1.3x the time of causal_linear/elu/autograd at L=4096 "
        "on cpu: not run",
    ):
        assert line in printed
    payload = json.loads(out.read_text())
    kinds = {row["kind"] for row in payload["results"]}
    linear = {f"{kind}/{name}" for kind in ("linear", "causal_linear") for name in ("favor", "elu")}
    assert kinds == {"quadratic", "sdpa_causal", *linear, *(f"{k}/autograd" for k in linear)}
    assert all(row["ms"] > 0 and row["memory_vs_sdpa"] > 0 for row in payload["results"])


def test_bench_long_reports_training_decoding_checkpointing_and_the_cpu_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "long.json"
    _script("bench_long").main(
        shlex.split(
            "--lengths 32 --tokens 128 --d-model 16 --heads 2 --d-ff 32 --layers 4 "
            f"--repeats 1 --decode-lengths 8 16 --decode-repeats 2 --checkpointing --json {out}"
        )
    )
    printed = capsys.readouterr().out
    for line in (
        "target causal_linear/elu: training tokens/s >= 3x softmax's at L=4096 on cpu: not run",
        "target causal_linear/favor: peak memory <= 0.5x softmax's at L=4096 on cpu: not run",
        "target delta: training tokens/s >= 1.2x softmax's at L=4096 on cpu: not run",
    ):
        assert line in printed
    assert "causal_linear/elu overtakes softmax in training tokens/s: " in printed
    assert "target gated_linear: decoding step at position 16 <= 1.2x the step at 8: " in printed
    payload = json.loads(out.read_text())
    kinds = [
        "softmax",
        "softmax/masked",
        "causal_linear/favor",
        "causal_linear/elu",
        "gated_linear",
        "delta",
        "hybrid",
        "sliding_window",
    ]
    checkpointed = [f"{kind}+ckpt" for kind in kinds if kind != "softmax/masked"]
    assert [row["kind"] for row in payload["train"]] == kinds + checkpointed
    for row in payload["train"]:
        assert row["tokens_per_s"] > 0 and row["batch"] == 128 // row["length"]
        assert row["peak_bytes"] >= 0 or row["peak_bytes"] != row["peak_bytes"]  # nan: no /proc
        if row["kind"].endswith("+ckpt"):
            assert row["time_vs_unchecked"] > 0
    assert {(row["kind"], row["position"]) for row in payload["decode"]} == {
        (kind, position) for kind in kinds if kind != "softmax/masked" for position in (8, 16)
    }
    assert all(
        row["speedup_vs_softmax"] == 1.0 for row in payload["train"] if row["kind"] == "softmax"
    )


def test_bench_train_compares_with_nn_transformer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "train.json"
    _script("bench_train").main(
        shlex.split(
            "--d-model 16 --heads 2 --d-ff 32 --layers 1 --vocab 50 --nb-features 8 "
            f"--seq-len 16 --batch-tokens 64 --repeats 1 --json {out}"
        )
    )
    printed = capsys.readouterr().out
    assert "target softmax tokens/s >= 1.0x nn.Transformer:" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [row["model"] for row in rows] == [
        "nn.Transformer",
        "softmax",
        "causal_linear_decoder",
        "performer",
    ]
    assert rows[0]["ratio_vs_nn_transformer"] == 1.0
    assert all(row["tokens_per_s"] > 0 for row in rows)


def test_bench_dropout_times_both_dropouts_alone_and_in_a_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dropout.json"
    _script("bench_dropout").main(
        shlex.split(
            f"--tokens 64 --length 8 --d-model 16 --d-ff 32 --repeats 1 --steps 1 --json {out}"
        )
    )
    printed = capsys.readouterr().out
    assert re.search(r"training step, 0\.\dM parameters, 8x8 tokens", printed)
    results = json.loads(out.read_text())["results"]
    assert [row["what"] for row in results[:2]] == [
        "dropout fwd+bwd (64, 16)",
        "dropout fwd+bwd (64, 32)",
    ]
    assert len(results) == 3 and results[2]["what"].endswith("M parameters, 8x8 tokens")
    for row in results:
        assert row["speedup"] == pytest.approx(row["nn.Dropout"] / row["ours"])


def test_plot_attention_draws_speed_and_quality_from_the_files(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    bench = {
        "device": "cpu",
        "threads": 1,
        "train": [
            {
                "kind": kind,
                "length": length,
                "tokens_per_s": 1000.0 / scale,
                "peak_bytes": 2**20 * scale,
            }
            for kind, scale in (("softmax", 2.0), ("delta", 1.0), ("delta+ckpt", 1.0))
            for length in (512, 1024)
        ],
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    runs = []
    for name in ("softmax", "delta"):
        with SummaryWriter(str(tmp_path / name / "tensorboard")) as writer:
            for step, value in enumerate((3.0, 2.5, 2.2)):
                writer.add_scalar("valid/bpb", value, step)
        runs.append(f"{name}={tmp_path / name}")
    out = tmp_path / "figures"
    _script("plot_attention").main(
        ["--bench", str(tmp_path / "bench.json"), "--runs", *runs, "--out", str(out)]
    )
    for figure in ("attention_speed.png", "attention_quality.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _RecallOracle(torch.nn.Module):
    """Perfect MQAR recall, written plainly: after the separator, each query key's next
    token is the value its pair gave it (`forward(inputs, mask)` -> one-hot logits)."""

    def __init__(self, separator: int, vocab: int) -> None:
        super().__init__()
        self.separator, self.vocab = separator, vocab

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*inputs.shape, self.vocab)
        for row, tokens in enumerate(inputs.tolist()):
            end = tokens.index(self.separator)
            values = dict(zip(tokens[1:end:2], tokens[2:end:2], strict=True))
            for position in range(end + 1, len(tokens)):
                logits[row, position, values.get(tokens[position], 0)] = 1.0
        return logits


def test_mqar_by_pairs_scores_the_answers_as_the_mqar_metric(
    tmp_path: Path, train_run: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """On a run's own test split the script's recall is the run's test `mqar` figure; a
    model that recalls every pair scores 100 at every pair count, one that predicts a
    wrong value 0."""
    import seq2seq
    from seq2seq.data.mqar import SEPARATOR, mqar_splits

    run_dir = train_run(
        "mqar-pairs",
        "experiment=mqar",
        "data.min_len=3",
        "data.max_len=5",
        "data.train_size=200",
        "data.validation_size=20",
        "data.test_size=30",
        "trainer.max_steps=30",
        "trainer.eval_every=30",
    )
    script = _script("mqar_by_pairs")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    splits = mqar_splits(
        train_size=200, validation_size=20, test_size=30, min_pairs=3, max_pairs=5, seed=1234
    )
    run = seq2seq.load_pretrained(run_dir)
    texts = list(splits["test"]["text"])
    assert script.recall(run, texts, batch=7) == pytest.approx(metrics["test"]["mqar"], abs=1e-6)
    (separator,) = run.task.tokenizer.encode(SEPARATOR)  # type: ignore[attr-defined]
    vocab = run.model.decoder.embedding.num_embeddings
    run.model = _RecallOracle(separator, vocab)  # type: ignore[assignment]
    assert script.recall(run, texts, batch=7) == 100.0
    # The same recall one position late: every answer scored at the query key's place.
    oracle = _RecallOracle(separator, vocab)
    run.model = lambda inputs, mask: oracle(inputs, mask).roll(1, dims=1)  # type: ignore[assignment]
    assert script.recall(run, texts, batch=7) == 0.0

    out = tmp_path / "pairs.json"
    threads = str(torch.get_num_threads())  # the script sets the process's thread count
    options = ["--pairs", "2", "4", "--examples", "6", "--threads", threads, "--output", str(out)]
    script.main([str(run_dir), *options])
    assert "2 pairs    4 pairs" in capsys.readouterr().out
    row = json.loads(out.read_text(encoding="utf-8"))["rows"][0]
    assert row["run"] == str(run_dir) and set(row["recall"]) == {"2", "4"}
