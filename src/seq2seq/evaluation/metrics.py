"""Corpus-level metrics and their registry.

Every metric takes the corpus at once, ``fn(hypotheses, references) -> float``, where
``references[i]`` lists the acceptable references of example ``i`` (one or more, the count
may vary between examples). Scores are percentages in ``[0, 100]`` (error rates may exceed
100 when hypotheses are much longer than their references). ``Metric.higher_is_better``
tells early stopping and best-checkpoint selection which way is better. A metric with an
answer rule (`mqar`) scores a language model's teacher-forced predictions at the answers the
rule finds in each held-out document, one hypothesis and one reference per answer.

One definition wherever a metric is computed (training's figures, seq2seq-evaluate):
- error rates (WER/PER, CER) are corpus-level, as sacrebleu's TER and jiwer's defaults:
  the edits of all examples over the length of all their (closest) references, not a
  mean of per-example rates;
- texts are compared with runs of whitespace collapsed to one space and none at either
  end (jiwer's default transform; BLEU and chrF tokenize on their own), so a trailing
  space in a decoded output, which seq2seq-evaluate's file reader strips, counts in
  neither place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sacrebleu

from seq2seq.data.generated import is_balanced
from seq2seq.data.mqar import answer_offsets
from seq2seq.evaluation.edit_distance import levenshtein
from seq2seq.evaluation.labels import macro_f1

MetricFn = Callable[[Sequence[str], Sequence[Sequence[str]]], float]
AnswerRule = Callable[[str], list[int]]
"""`rule(document) -> the character offsets of its answers`; raises ValueError for a
document that has none by the rule's format."""


@dataclass(frozen=True)
class Metric:
    """A named corpus metric.

    name: the registry key, as written in configs and on the command line.
    fn: ``fn(hypotheses, references) -> float``, a percentage.
    higher_is_better: True for BLEU-like scores, False for error rates.
    """

    name: str
    fn: MetricFn
    higher_is_better: bool
    needs_references: bool = True
    """False for a rule that judges each output alone (`dyck`)."""
    answers: AnswerRule | None = None
    """For a language model's teacher-forced metric (`mqar`): the rule that finds the
    answers in a held-out document. The language-modeling task scores, instead of sampled
    documents, the argmax of the model's next-token distribution at each answer (the
    hypotheses) against the answer itself (the references), over the whole split."""

    def __call__(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        return self.fn(hypotheses, references)


def check_corpus(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    """Raise ValueError unless there is one non-empty list of references per hypothesis."""
    if isinstance(hypotheses, str):
        raise ValueError("hypotheses must be a sequence of strings, not a single string")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} reference lists; "
            "give one list of references per hypothesis"
        )
    if len(hypotheses) == 0:
        raise ValueError("cannot score an empty corpus: no hypotheses given")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(
                f"references[{i}] is the string {refs!r}; it must be a list of references, "
                f"e.g. [{refs!r}]"
            )
        if len(refs) == 0:
            raise ValueError(f"references[{i}] is empty; each example needs at least one reference")


def squeeze_whitespace(text: str) -> str:
    """`text` with runs of whitespace as one space and none at either end."""
    return " ".join(text.split())


def _squeezed(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[str], list[list[str]]]:
    return (
        [squeeze_whitespace(h) for h in hypotheses],
        [[squeeze_whitespace(r) for r in refs] for refs in references],
    )


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Transpose per-example reference lists into sacrebleu's parallel streams.

    sacrebleu wants ``streams[k][i]`` = k-th reference of example i, all streams of equal
    length; examples with fewer references are padded with None, which sacrebleu skips.
    (An empty string would instead count as an empty reference and change the brevity
    penalty.)
    """
    width = max(len(refs) for refs in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU with sacrebleu's defaults (13a tokenization, exp smoothing)."""
    check_corpus(hypotheses, references)
    streams = _reference_streams(references)
    return float(sacrebleu.metrics.BLEU().corpus_score(list(hypotheses), streams).score)  # type: ignore[arg-type]


def chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF with sacrebleu's defaults (character 6-grams, beta 2, no word n-grams)."""
    check_corpus(hypotheses, references)
    streams = _reference_streams(references)
    return float(sacrebleu.metrics.CHRF().corpus_score(list(hypotheses), streams).score)  # type: ignore[arg-type]


def _edit_rate(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    split: Callable[[str], Sequence[str]],
    unit: str,
) -> float:
    """Total edits over total reference length, in percent, after splitting into units.

    With several references the closest one (fewest edits; the first on ties) supplies
    both the edits and the length, as in multi-reference WER scoring.
    """
    check_corpus(hypotheses, references)
    hypotheses, references = _squeezed(hypotheses, references)
    edits = 0
    length = 0
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        hyp_units = split(hypothesis)
        best_edits, best_length = min(
            ((levenshtein(hyp_units, ref_units), len(ref_units)) for ref_units in map(split, refs)),
            key=lambda pair: pair[0],
        )
        edits += best_edits
        length += best_length
    if length == 0:
        raise ValueError(
            f"the {unit} error rate is undefined: the chosen references contain no {unit}s"
        )
    return 100.0 * edits / length


def wer(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Word error rate, corpus-level: the token edits of all examples over the tokens of all
    their closest references, in percent.

    Tokens are whitespace-separated, so on space-separated phonemes this is the phoneme
    error rate (PER) of grapheme-to-phoneme papers; ``per`` is registered as an alias.
    """
    return _edit_rate(hypotheses, references, str.split, "token")


def cer(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Character error rate, corpus-level: the character edits of all examples over the
    characters of all their closest references, in percent.

    Every character counts, the single spaces between words included.
    """
    return _edit_rate(hypotheses, references, list, "character")


def ser(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Sequence error rate: percentage of hypotheses that match none of their references.

    Matching is string equality after whitespace is squeezed. Grapheme-to-phoneme papers call this the word
    error rate ("WER"), since each example there is one word; our ``wer`` is a
    token-level edit rate instead.
    """
    check_corpus(hypotheses, references)
    hypotheses, references = _squeezed(hypotheses, references)
    wrong = sum(hyp not in refs for hyp, refs in zip(hypotheses, references, strict=True))
    return 100.0 * wrong / len(hypotheses)


def exact_match(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Percentage of hypotheses equal to one of their references: ``100 - ser``."""
    return 100.0 - ser(hypotheses, references)


def accuracy(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Percentage of hypotheses equal to their first reference (classification labels)."""
    check_corpus(hypotheses, references)
    hypotheses, references = _squeezed(hypotheses, references)
    correct = sum(hyp == refs[0] for hyp, refs in zip(hypotheses, references, strict=True))
    return 100.0 * correct / len(hypotheses)


def f1(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Macro-averaged F1 of label predictions against the first reference, in percent:
    the unweighted mean over every label that occurs as a reference or a prediction, so
    a rare class counts as much as a common one."""
    check_corpus(hypotheses, references)
    hypotheses, references = _squeezed(hypotheses, references)
    return macro_f1(hypotheses, [refs[0] for refs in references])


def dyck(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Percentage of hypotheses that are balanced bracket strings (the `dyck` language
    model task's rule); references are not read."""
    if not hypotheses:
        raise ValueError("cannot score an empty corpus: no hypotheses given")
    return 100.0 * sum(is_balanced(hypothesis) for hypothesis in hypotheses) / len(hypotheses)


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("bleu", bleu, higher_is_better=True),
        Metric("chrf", chrf, higher_is_better=True),
        Metric("wer", wer, higher_is_better=False),
        Metric("per", wer, higher_is_better=False),
        Metric("cer", cer, higher_is_better=False),
        Metric("ser", ser, higher_is_better=False),
        Metric("exact_match", exact_match, higher_is_better=True),
        Metric("accuracy", accuracy, higher_is_better=True),
        Metric("f1", f1, higher_is_better=True),
        Metric("dyck", dyck, higher_is_better=True, needs_references=False),
        # The share of MQAR's answers (the value after each queried key) predicted right.
        Metric("mqar", accuracy, higher_is_better=True, answers=answer_offsets),
    )
}


def get_metric(name: str) -> Metric:
    """Look up a metric by name; an unknown name raises ValueError listing the valid ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}"
        ) from None
