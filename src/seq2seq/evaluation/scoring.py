"""Score a corpus with several named metrics and render the result as a table."""

from __future__ import annotations

from collections.abc import Sequence

from seq2seq.evaluation.metrics import check_corpus, get_metric


def score(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    metrics: Sequence[str],
) -> dict[str, float]:
    """Compute each named metric on the corpus, in the order given.

    ``references[i]`` lists the acceptable references of ``hypotheses[i]``. Every metric
    name is looked up before any scoring, so a typo fails at once (ValueError listing the
    valid names) instead of after the slow metrics ran.
    """
    if isinstance(metrics, str):
        raise ValueError(f"metrics must be a list of names, e.g. [{metrics!r}], not a string")
    if len(metrics) == 0:
        raise ValueError("no metrics requested; name at least one, e.g. ['bleu']")
    resolved = [get_metric(name) for name in metrics]
    check_corpus(hypotheses, references)
    return {metric.name: metric(hypotheses, references) for metric in resolved}


def format_table(scores: dict[str, float], *, digits: int = 2) -> str:
    """Two aligned columns, metric and score, under a header; no trailing newline."""
    rows = [("metric", "score")] + [(name, f"{value:.{digits}f}") for name, value in scores.items()]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    return "\n".join(f"{name:<{name_width}}  {value:>{value_width}}" for name, value in rows)
