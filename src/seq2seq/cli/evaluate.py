"""``seq2seq-evaluate``: score a predictions file against reference files, or a
checkpoint on a split of its run's data.

Example::

    seq2seq-evaluate --hyp predictions.txt --ref refs.txt --metrics bleu,chrf,wer
    seq2seq-evaluate --hyp predictions.txt --ref ref1.txt --ref ref2.txt --json
    seq2seq-generate checkpoint=<run> input=src.txt | seq2seq-evaluate --hyp - --ref refs.txt
    seq2seq-evaluate --hyp labels.txt --ref gold.txt --metrics accuracy,f1
    seq2seq-evaluate --hyp samples.txt --metrics dyck        # a rule needs no references
    seq2seq-evaluate --checkpoint <run dir> --split test     # the run's test figures
    seq2seq-evaluate --checkpoint <run1> <run2> --split test # an ensemble's

``-`` reads stdin, for ``--hyp`` or one ``--ref``: at most one input can be ``-``. A file
that cannot be read is named with its option (``--hyp 'hyps.txt': no such file``).
``--checkpoint`` evaluates as training's test did (a language model's perplexity and bits
per byte, a classifier's accuracy and F1, a seq2seq model's decoded metrics); several
runs are evaluated as one ensemble (`seq2seq.jobs.ensemble`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from seq2seq.evaluation.files import (
    check_one_stdin,
    parse_metric_names,
    read_lines,
    read_references,
)
from seq2seq.evaluation.metrics import METRICS, get_metric
from seq2seq.evaluation.scoring import format_table, score
from seq2seq.jobs.ensemble import evaluate_ensemble
from seq2seq.jobs.trained_run import checkpoint_file
from seq2seq.training.devices import resolve_device

DEFAULT_METRICS = "bleu,chrf"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seq2seq-evaluate",
        description="Score hypotheses against references with corpus-level metrics.",
    )
    parser.add_argument("--hyp", metavar="FILE", help="one hypothesis per line ('-': stdin)")
    parser.add_argument(
        "--ref",
        action="append",
        metavar="FILE",
        help=(
            "references parallel to --hyp, one line per example; repeat --ref for more "
            "reference sets, or put alternatives on one line separated by a TAB ('-': stdin, "
            "for one input at most)"
        ),
    )
    parser.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        metavar="NAMES",
        help=f"comma-separated metric names (default: {DEFAULT_METRICS}); "
        f"valid: {', '.join(sorted(METRICS))}",
    )
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        metavar="RUN",
        help=(
            "a run dir (its best.pt), checkpoint or export dir: evaluate it on --split as "
            "training did; several runs are evaluated as one ensemble (the mean of their "
            "probabilities), with the first run's data and settings"
        ),
    )
    parser.add_argument(
        "--split", default="test", choices=("validation", "test"), help="with --checkpoint"
    )
    parser.add_argument(
        "--device", default="auto", help="with --checkpoint: auto, cpu, cuda or cuda:N"
    )
    parser.add_argument("--json", action="store_true", help="print the scores as a JSON object")
    return parser


def _scores(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, float]:
    if args.checkpoint is not None:
        if args.hyp is not None or args.ref:
            parser.error("--checkpoint evaluates a model; it takes no --hyp or --ref")
        device = resolve_device(args.device, field="--device")
        paths = [checkpoint_file(name) for name in args.checkpoint]
        return evaluate_ensemble(paths, args.split, device, names=args.checkpoint)
    if args.hyp is None:
        parser.error("give --hyp (with --ref), or --checkpoint")
    metric_names = parse_metric_names(args.metrics)
    refs = args.ref or []
    if not refs and any(get_metric(name).needs_references for name in metric_names):
        parser.error(f"--metrics {args.metrics} compare with references: give --ref")
    check_one_stdin(args.hyp, refs)
    hypotheses = read_lines(args.hyp, option="--hyp")
    references = read_references(args.hyp, len(hypotheses), refs)
    return score(hypotheses, references, metric_names)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seq2seq-evaluate``; returns the exit status (errors exit with 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scores = _scores(args, parser)
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        parser.error(str(error))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(format_table(scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
