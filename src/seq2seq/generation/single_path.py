"""The decoding loop that follows one path per source, shared by greedy search and sampling.

The strategies differ only in how the next token is chosen from the step's logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.constraints import check_special_ids, forbid_tokens
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.length_penalty import normalised_score
from seq2seq.generation.protocol import IncrementalModel

TokenChooser = Callable[[Tensor], Tensor]
"""Picks the next tokens: logits (B, V), forbidden tokens at -inf -> token ids (B,) long."""


def decode_single_path(
    model: IncrementalModel,
    src_tokens: Tensor,
    src_mask: Tensor,
    settings: GenerationConfig,
    *,
    choose: TokenChooser,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> list[list[Hypothesis]]:
    """Decode every source token by token with ``choose``, batched.

    src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
    Returns B lists of one Hypothesis. A finished row is fed pad and its output frozen;
    the loop stops when every row has produced eos (forced at its max length).
    """
    batch = src_tokens.size(0)
    if batch == 0:
        return []
    device = src_tokens.device
    max_lengths = settings.max_lengths(src_mask.sum(1))  # (B,)
    limit = int(max_lengths.max())

    memory = model.encode(src_tokens, src_mask)
    state = model.init_state(memory, src_mask)

    tokens = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    output = torch.full((batch, limit), pad_id, dtype=torch.long, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    log_probs = torch.zeros(batch, dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)

    for step in range(limit + 1):
        logits, state = model.step(tokens, state)
        logits = logits.float()  # (B, V)
        if step == 0:
            check_special_ids(logits.size(1), bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
        allowed = forbid_tokens(
            logits,
            step=step,
            max_lengths=max_lengths,
            min_len=settings.min_len,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
        )
        next_tokens = choose(allowed)
        # Forcing eos here as well keeps the row finite-length even if a model gives eos
        # -inf at the limit (then every token is -inf and argmax would pick token 0).
        next_tokens = next_tokens.masked_fill(max_lengths <= step, eos_id)
        next_tokens = next_tokens.masked_fill(finished, pad_id)

        token_log_probs = torch.log_softmax(logits, dim=-1).gather(1, next_tokens.unsqueeze(1))
        log_probs += token_log_probs.squeeze(1).masked_fill(finished, 0.0)
        ending = ~finished & (next_tokens == eos_id)
        growing = ~finished & ~ending
        if step < limit:  # at step == limit every row is forced to end
            output[:, step] = next_tokens.masked_fill(~growing, pad_id)
        lengths += growing.long()
        finished |= ending
        if bool(finished.all()):
            break
        tokens = next_tokens

    return [
        [
            Hypothesis(
                tokens=row[:length].tolist(),
                score=normalised_score(log_prob, length + 1, settings.length_penalty),
                log_prob=log_prob,
                at_limit=length >= row_limit,
            )
        ]
        for row, length, log_prob, row_limit in zip(
            output.cpu(), lengths.tolist(), log_probs.tolist(), max_lengths.tolist(), strict=True
        )
    ]
