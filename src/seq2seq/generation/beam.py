"""Beam search, batched over sources and beams (fairseq-style bookkeeping).

All B sources advance together as B*K decoder rows. At each step the K*V extensions of
an example's beams are ranked and the best 2K kept: since at most K of them end in eos
(one per beam), at least K continue, which refill the beams. An eos candidate among the
best K finishes a hypothesis, scored with the length penalty. An example is done when
it has K finished hypotheses or reaches its max length, where eos is forced so that
every live beam finishes (if even the forced eos has probability zero, the best beam
ends there with score -inf, as in greedy search). The decoder state follows the
surviving beams through ``state.reorder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from seq2seq.config.generation import GenerationConfig
from seq2seq.generation.constraints import check_special_ids, forbid_tokens
from seq2seq.generation.hypothesis import Hypothesis
from seq2seq.generation.length_penalty import normalised_score
from seq2seq.generation.protocol import IncrementalModel


def beam_search(
    model: IncrementalModel,
    src_tokens: Tensor,
    src_mask: Tensor,
    settings: GenerationConfig,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    source_ids: Sequence[int] | None = None,
) -> list[list[Hypothesis]]:
    """Beam search of width ``settings.beam_size`` for every source.

    src_tokens: (B, S) long; src_mask: (B, S) bool, True where a token is real.
    Returns B lists of at most ``settings.nbest`` hypotheses, best score first (fewer
    only when fewer distinct outputs of nonzero probability exist within the limits).
    """
    batch = src_tokens.size(0)
    if batch == 0:
        return []
    beam = settings.beam_size
    device = src_tokens.device
    max_lengths = settings.max_lengths(src_mask.sum(1))  # (B,)
    row_max_lengths = max_lengths.repeat_interleave(beam)  # (B*K,)
    max_lengths_list = max_lengths.tolist()
    limit = max(max_lengths_list)

    memory = model.encode(src_tokens, src_mask)
    # Cross-attention keys and values are computed once per source, then copied per beam.
    state = model.init_state(memory, src_mask)
    state = state.reorder(torch.arange(batch, device=device).repeat_interleave(beam))

    # Beam k of example b lives in row b*K + k. All beams start as the same empty
    # prefix; only beam 0 may be extended at first, or the K beams would be K copies.
    beam_scores = torch.full((batch, beam), float("-inf"), device=device)  # (B, K)
    beam_scores[:, 0] = 0.0
    prefixes = torch.full((batch * beam, limit), pad_id, dtype=torch.long, device=device)
    tokens = torch.full((batch * beam,), bos_id, dtype=torch.long, device=device)
    row_offsets = (torch.arange(batch, device=device) * beam).unsqueeze(1)  # (B, 1)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch

    for step in range(limit + 1):
        logits, state = model.step(tokens, state)  # (B*K, V)
        vocab_size = logits.size(1)
        if step == 0:
            check_special_ids(vocab_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
        log_probs = forbid_tokens(
            torch.log_softmax(logits.float(), dim=-1),
            step=step,
            max_lengths=row_max_lengths,
            min_len=settings.min_len,
            bos_id=bos_id,
            eos_id=eos_id,
            pad_id=pad_id,
        )
        candidates = (beam_scores.view(-1, 1) + log_probs).view(batch, beam * vocab_size)
        cand_scores, cand_index = candidates.topk(2 * beam, dim=1)  # (B, 2K), best first
        cand_beams = cand_index // vocab_size  # (B, 2K)
        cand_tokens = cand_index % vocab_size  # (B, 2K)
        cand_is_eos = cand_tokens == eos_id

        _finish_hypotheses(
            finished,
            done,
            # Only eos among the best K can finish: the others would not have made the beam.
            finishing=cand_is_eos[:, :beam] & torch.isfinite(cand_scores[:, :beam]),
            rows=(row_offsets + cand_beams)[:, :beam],
            scores=cand_scores[:, :beam],
            prefixes=prefixes[:, :step],
            beam=beam,
            length_penalty=settings.length_penalty,
            max_lengths=max_lengths_list,
        )
        for b in range(batch):
            if not done[b] and step >= max_lengths_list[b] and not finished[b]:
                # Forced eos was not finite (e.g. a -inf eos logit): end the best beam
                # anyway, as greedy search does, so every source has an output.
                row = b * beam
                finished[b].append(
                    _hypothesis(
                        prefixes[row, :step].tolist(),
                        float(beam_scores[b, 0] + log_probs[row, eos_id]),
                        settings.length_penalty,
                        at_limit=True,
                    )
                )
            done[b] = done[b] or len(finished[b]) >= beam or step >= max_lengths_list[b]
        if all(done):
            break

        # The best K candidates that do not end: a stable sort of the eos flags moves
        # them to the front while keeping their score order.
        keep = torch.argsort(cand_is_eos.to(torch.uint8), dim=1, stable=True)[:, :beam]
        beam_scores = cand_scores.gather(1, keep)  # (B, K)
        next_tokens = cand_tokens.gather(1, keep).view(-1)  # (B*K,)
        source_rows = (row_offsets + cand_beams.gather(1, keep)).view(-1)  # (B*K,)

        prefixes = prefixes.index_select(0, source_rows)
        prefixes[:, step] = next_tokens
        state = state.reorder(source_rows)
        # Rows of finished examples keep decoding in lockstep, fed pad; nothing reads them.
        done_rows = torch.tensor(done, device=device).repeat_interleave(beam)
        tokens = next_tokens.masked_fill(done_rows, pad_id)

    return [
        sorted(hypotheses, key=lambda hypothesis: hypothesis.score, reverse=True)[: settings.nbest]
        for hypotheses in finished
    ]


def _finish_hypotheses(
    finished: list[list[Hypothesis]],
    done: list[bool],
    *,
    finishing: Tensor,
    rows: Tensor,
    scores: Tensor,
    prefixes: Tensor,
    beam: int,
    length_penalty: float,
    max_lengths: list[int],
) -> None:
    """Append the hypotheses that end with eos at this step to ``finished``.

    finishing: (B, K) bool, candidates that end here; rows: (B, K) long, the decoder row
    each extends; scores: (B, K) their summed log-probabilities, eos included;
    prefixes: (B*K, step) the tokens of every row so far; max_lengths: each example's
    output length limit (a hypothesis that ends there was forced to). Examples already done take
    nothing, and none takes more than ``beam`` hypotheses in all: candidates come best
    first, and at one step all share a length, so the best ones are kept.
    """
    positions = finishing.nonzero().tolist()  # [[b, j], ...] row-major, like the masks below
    if not positions:
        return
    tokens = prefixes.index_select(0, rows[finishing]).tolist()
    log_probs = scores[finishing].tolist()
    for (b, _), hypothesis_tokens, log_prob in zip(positions, tokens, log_probs, strict=True):
        if done[b] or len(finished[b]) >= beam:
            continue
        finished[b].append(
            _hypothesis(
                hypothesis_tokens,
                log_prob,
                length_penalty,
                at_limit=len(hypothesis_tokens) >= max_lengths[b],
            )
        )


def _hypothesis(
    tokens: list[int], log_prob: float, length_penalty: float, *, at_limit: bool
) -> Hypothesis:
    """A finished output; its length for the penalty counts eos."""
    return Hypothesis(
        tokens=tokens,
        score=normalised_score(log_prob, len(tokens) + 1, length_penalty),
        log_prob=log_prob,
        at_limit=at_limit,
    )
