"""Corpus metrics (BLEU, chrF, WER/PER, CER, SER, exact match, accuracy) and scoring."""

from seq2seq.evaluation.edit_distance import levenshtein
from seq2seq.evaluation.metrics import METRICS, Metric, get_metric
from seq2seq.evaluation.scoring import format_table, score

__all__ = ["METRICS", "Metric", "format_table", "get_metric", "levenshtein", "score"]
