"""Label-smoothed cross-entropy that ignores padding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossSums:
    """Sums over the real target tokens of a batch; divide by `tokens` for means."""

    loss: Tensor
    """Label-smoothed loss, summed (the quantity that is optimised)."""
    nll: Tensor
    """Negative log-likelihood, summed (perplexity = exp(nll / tokens))."""
    tokens: int


def label_smoothed_cross_entropy(
    logits: Tensor, targets: Tensor, *, pad_id: int, smoothing: float
) -> LossSums:
    """`logits: (B, T, V)`, `targets: (B, T)`; positions holding `pad_id` do not count.

    With smoothing eps the target distribution is (1 - eps) on the gold token plus eps
    spread uniformly over the vocabulary, as in fairseq and `F.cross_entropy`.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    real = targets != pad_id
    gold = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nll = -(gold * real).sum()
    uniform = -(log_probs.mean(-1) * real).sum()
    loss = (1.0 - smoothing) * nll + smoothing * uniform
    return LossSums(loss=loss, nll=nll, tokens=int(real.sum()))


def perplexity(nll_sum: float, tokens: int) -> float:
    return float(torch.tensor(nll_sum / max(tokens, 1)).clamp(max=50).exp())
