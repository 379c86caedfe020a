"""Which tokens may come next: special ids, minimum and maximum output length.

Shared by every strategy so that greedy, beam search and sampling search the same
space of outputs: tokens over the vocabulary without pad and bos, ending in eos, with
between min_len and the example's max length tokens before it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_special_ids(vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int) -> None:
    """Raise ValueError unless the special ids are inside the vocabulary and eos != pad."""
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        if not 0 <= value < vocab_size:
            raise ValueError(
                f"{name}={value} is outside the model's vocabulary of {vocab_size} tokens; "
                "pass the ids of the tokenizer that the model was trained with"
            )
    if eos_id == pad_id:
        raise ValueError(
            f"eos_id and pad_id are both {eos_id}; generation needs them distinct to tell "
            "a finished output from padding"
        )


def forbid_tokens(
    scores: Tensor,
    *,
    step: int,
    max_lengths: Tensor,
    min_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> Tensor:
    """Set the scores of tokens that may not come next to -inf.

    scores: (N, V) logits or log-probabilities for the token after ``step`` output tokens;
    max_lengths: (N,) long, each row's output length limit (eos not counted).
    Returns (N, V), a new tensor. Rules, in order of precedence:
    - a row with ``step >= max_length`` may only end: every token but eos is forbidden;
    - pad and bos are never generated (unless one of them is also eos);
    - eos is forbidden while ``step < min_len``.
    Nothing is renormalised: forbidden tokens are simply never chosen, and the log
    probabilities of allowed ones stay the model's.
    """
    vocab = torch.arange(scores.size(1), device=scores.device)
    is_eos = vocab == eos_id  # (V,)
    never = ((vocab == pad_id) | (vocab == bos_id)) & ~is_eos  # (V,)
    if step < min_len:
        never = never | is_eos
    at_limit = (max_lengths <= step).unsqueeze(1)  # (N, 1)
    forbidden = torch.where(at_limit, ~is_eos, never)  # (N, V)
    return scores.masked_fill(forbidden, float("-inf"))
