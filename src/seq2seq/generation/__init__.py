"""Decoding: greedy search, beam search and sampling over an incremental model."""

from seq2seq.generation.beam import beam_search
from seq2seq.generation.generate import STRATEGIES, Strategy, generate, get_strategy
from seq2seq.generation.greedy import greedy_search
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.length_penalty import length_penalty, normalised_score
from seq2seq.generation.protocol import DecoderState, IncrementalModel
from seq2seq.generation.sampling import sample_sequences, top_k_filter, top_p_filter

__all__ = [
    "STRATEGIES",
    "DecoderState",
    "Hypothesis",
    "IncrementalModel",
    "Strategy",
    "beam_search",
    "generate",
    "get_strategy",
    "greedy_search",
    "length_penalty",
    "normalised_score",
    "sample_sequences",
    "top_k_filter",
    "top_p_filter",
]
