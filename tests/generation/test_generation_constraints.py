"""forbid_tokens: special ids, min_len and per-row max lengths."""

from __future__ import annotations

import torch

from seq2seq.generation.constraints import forbid_tokens

PAD, BOS, EOS, V = 0, 1, 2, 5


def allowed(step: int, max_lengths: list[int], min_len: int, bos: int = BOS) -> list[list[int]]:
    scores = torch.zeros(len(max_lengths), V)
    out = forbid_tokens(
        scores,
        step=step,
        max_lengths=torch.tensor(max_lengths),
        min_len=min_len,
        bos_id=bos,
        eos_id=EOS,
        pad_id=PAD,
    )
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in out]


def test_pad_and_bos_are_never_generated() -> None:
    assert allowed(step=3, max_lengths=[9], min_len=0) == [[2, 3, 4]]


def test_bos_that_doubles_as_eos_stays_allowed() -> None:
    assert allowed(step=3, max_lengths=[9], min_len=0, bos=EOS) == [[1, 2, 3, 4]]


def test_eos_is_forbidden_before_min_len() -> None:
    assert allowed(step=1, max_lengths=[9], min_len=2) == [[3, 4]]
    assert allowed(step=2, max_lengths=[9], min_len=2) == [[2, 3, 4]]


def test_rows_at_their_max_length_may_only_end_even_before_min_len() -> None:
    assert allowed(step=2, max_lengths=[2, 5, 1], min_len=4) == [[2], [3, 4], [2]]


def test_scores_are_not_renormalised() -> None:
    scores = torch.log_softmax(torch.arange(V, dtype=torch.float32), dim=0).unsqueeze(0)
    out = forbid_tokens(
        scores, step=0, max_lengths=torch.tensor([3]), min_len=0, bos_id=BOS, eos_id=EOS, pad_id=PAD
    )
    assert torch.equal(out[0, 2:], scores[0, 2:])
