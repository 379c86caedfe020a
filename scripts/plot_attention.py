"""Draw the figures of docs/attention.md from the benchmarks' and the runs' own files.

    python scripts/plot_attention.py --bench outputs/bench_long.json \\
        --runs softmax=outputs/lm/softmax delta=outputs/lm/delta hybrid=outputs/lm/hybrid \\
        --out docs/figures

- `attention_speed.png`: training tokens/s and peak memory against the context length,
  one line per attention kind (from scripts/bench_long.py's JSON);
- `attention_quality.png`: validation bits per byte against wall time, one line per run
  (the `valid/bpb` scalars of each run dir's TensorBoard events, at the wall time they
  were written, from the run's first event).

The plotting library is the one TensorBoard's confusion matrix uses (matplotlib, off
screen). Each figure is written only from the data given; nothing is measured here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def speed_figure(bench: dict) -> Figure:
    """Tokens/s and peak MiB against L per kind, from bench_long's `train` rows."""
    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    speed, memory = figure.subplots(1, 2)
    kinds = [
        kind for kind in dict.fromkeys(r["kind"] for r in bench["train"]) if "+ckpt" not in kind
    ]
    for kind in kinds:
        rows = sorted((r for r in bench["train"] if r["kind"] == kind), key=lambda r: r["length"])
        lengths = [r["length"] for r in rows]
        speed.plot(lengths, [r["tokens_per_s"] for r in rows], marker="o", label=kind)
        memory.plot(lengths, [r["peak_bytes"] / 2**20 for r in rows], marker="o", label=kind)
    for axes, name in ((speed, "training tokens/s"), (memory, "peak memory of a step (MiB)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("context length L (tokens)")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
    speed.legend(fontsize=8)
    device = bench.get("device") or bench.get("settings", {}).get("device", "")
    figure.suptitle(f"{device}, {bench.get('threads', '?')} thread(s)")
    return figure


def validation_curve(run: Path, tag: str = "valid/bpb") -> tuple[list[float], list[float]]:
    """(minutes since the run's first event, value) of every `tag` scalar of `run`."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        raise SystemExit(f"{run}: no {tag} scalars in its TensorBoard events")
    start = min(
        events.Scalars(name)[0].wall_time
        for name in events.Tags()["scalars"]
        if events.Scalars(name)
    )
    points = events.Scalars(tag)
    return [(p.wall_time - start) / 60 for p in points], [p.value for p in points]


def quality_figure(runs: dict[str, Path]) -> Figure:
    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for name, run in runs.items():
        minutes, values = validation_curve(run)
        axes.plot(minutes, values, marker=".", label=name)
    axes.set_xlabel("wall time (minutes)")
    axes.set_ylabel("validation bits per byte")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def save(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure).print_png(str(path))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", type=Path, help="scripts/bench_long.py's JSON")
    parser.add_argument(
        "--runs", nargs="*", default=[], help="NAME=RUN_DIR of seq2seq-train LM runs"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args(argv)
    if args.bench is not None:
        save(speed_figure(json.loads(args.bench.read_text())), args.out / "attention_speed.png")
    if args.runs:
        runs = dict(item.split("=", 1) for item in args.runs)
        save(
            quality_figure({k: Path(v) for k, v in runs.items()}),
            args.out / "attention_quality.png",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
