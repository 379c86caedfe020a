"""Language-modeling evaluation and continuation: loss, perplexity and bits per
byte over a whole split, answer metrics (`mqar`) on its teacher-forced predictions, rule
metrics on sampled documents, and prompts continued by the decoding strategies through
`PromptedModel`."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn
from tqdm import tqdm

from seq2seq.config.generation import GenerationConfig
from seq2seq.data.batching import length_sorted_chunks
from seq2seq.evaluation import score
from seq2seq.generation import Hypothesis, generate
from seq2seq.generation.limits import AT_LIMIT, count_at_limit, warn_at_limit
from seq2seq.generation.prompted import PromptedModel
from seq2seq.tasks.language_modeling_batches import collate_blocks
from seq2seq.tasks.language_modeling_data import BLOCK
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from seq2seq.training.evaluator import EvaluationResult
from seq2seq.training.loss import label_smoothed_cross_entropy, perplexity
from seq2seq.training.precision import autocast


def one_line(text: str) -> str:
    """`text` on one line: backslashes, newlines and carriage returns written as the
    two-character escapes backslash-backslash, backslash-n and backslash-r, so that a
    continuation of several lines keeps one line per prompt."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def continue_prompts(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    settings: GenerationConfig,
    *,
    max_len: int,
    max_tokens: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    progress: bool = True,
) -> list[list[Hypothesis]]:
    """N-best continuations of every prompt (token ids starting with eos), in order.

    Prompts are batched by length (they share positions); a continuation adds at most
    `settings.max_new_tokens` tokens, and no more than the positions `max_len` leaves."""
    results: list[list[Hypothesis]] = [[] for _ in prompts]
    prompted = PromptedModel(model)  # type: ignore[arg-type]
    lengths = [len(prompt) for prompt in prompts]
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    bar = tqdm(
        total=len(prompts), desc="generating", unit="prompt", file=sys.stderr, disable=not progress
    )
    with bar, autocast(device, autocast_dtype):
        for length, members in sorted(groups.items()):
            # The strategies feed every output token (the last one to see eos after it):
            # a prompt of P tokens and N outputs reach position P - 1 + N.
            room = max_len - length
            if room < 1:
                raise ValueError(
                    f"a prompt of {length - 1} tokens leaves no position for a continuation "
                    f"(model.max_len={max_len}); shorten it"
                )
            limit = replace(
                settings,
                max_len_a=None,
                max_len_b=None,
                max_len=min(settings.max_new_tokens, room),
                min_len=min(settings.min_len, room),
            )
            for chunk in length_sorted_chunks([length] * len(members), max_tokens):
                indices = [members[i] for i in chunk]
                tokens = torch.tensor([list(prompts[i]) for i in indices], device=device)
                hypotheses = generate(
                    prompted,
                    tokens,
                    torch.ones_like(tokens, dtype=torch.bool),
                    limit,
                    bos_id=BOS_ID,
                    eos_id=EOS_ID,
                    pad_id=PAD_ID,
                    source_ids=indices,
                )
                for index, nbest in zip(indices, hypotheses, strict=True):
                    results[index] = nbest
                bar.update(len(indices))
    return results


def answer_predictions(
    logits: Tensor, targets: Tensor, positions: Sequence[Sequence[int]]
) -> tuple[list[int], list[int]]:
    """The argmax token and the target at each answer position, row by row.

    logits: `(B, L, V)`; targets: `(B, L)`; positions[b]: row b's answer positions (< L).
    Returns (predicted, expected): N token ids each, N = the number of positions."""
    rows = [row for row, columns in enumerate(positions) for _ in columns]
    columns = [column for row_columns in positions for column in row_columns]
    index = (
        torch.tensor(rows, dtype=torch.long, device=logits.device),
        torch.tensor(columns, dtype=torch.long, device=logits.device),
    )
    return logits[index].argmax(dim=-1).tolist(), targets[index].tolist()


def continuation_limit_advice(settings: GenerationConfig, max_len: int) -> str:
    """Which setting to raise for continuations that stopped at their length limit."""
    return (
        f"raise generation.max_new_tokens={settings.max_new_tokens} (a continuation also "
        f"ends where the model's model.max_len={max_len} positions do)"
    )


class LanguageModelEvaluator:
    def __init__(
        self,
        *,
        model: nn.Module,
        blocks: list[list[int]],
        shares: list[float],
        tokenizer: Tokenizer,
        generation: GenerationConfig,
        metrics: Sequence[str],
        answers: Mapping[str, list[list[int]]],
        sampled_documents: int,
        num_samples: int,
        max_len: int,
        max_tokens: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        label_smoothing: float,
        split: str,
    ) -> None:
        self.model = model
        self.blocks = blocks
        self.bytes = sum(shares)
        self.tokenizer = tokenizer
        self.generation = generation
        self.answers = dict(answers)
        """Per answer metric (`mqar`), each block's answer positions among its targets."""
        self.rules = [name for name in metrics if name not in answers]
        """The metrics scored on sampled documents (`dyck`)."""
        self.sampled_documents = sampled_documents if self.rules else 0
        self.num_samples = num_samples
        self.max_len = max_len
        self.max_tokens = max_tokens
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.label_smoothing = label_smoothing
        self.split = split

    @torch.no_grad()
    def evaluate(self, step: int) -> EvaluationResult:
        model = self.model
        was_training = model.training
        model.eval()
        nll_sum, loss_sum, tokens = 0.0, 0.0, 0
        guesses: dict[str, tuple[list[str], list[list[str]]]] = {
            name: ([], []) for name in self.answers
        }
        try:
            with autocast(self.device, self.autocast_dtype):
                chunks = length_sorted_chunks([len(b) - 1 for b in self.blocks], self.max_tokens)
                for chunk in chunks:
                    batch = collate_blocks([{BLOCK: self.blocks[i]} for i in chunk])
                    batch = batch.to(self.device)
                    logits = model(batch.tokens, None)
                    sums = label_smoothed_cross_entropy(
                        logits, batch.targets, pad_id=PAD_ID, smoothing=self.label_smoothing
                    )
                    for name, positions in self.answers.items():
                        predicted, expected = answer_predictions(
                            logits, batch.targets, [positions[i] for i in chunk]
                        )
                        hypotheses, references = guesses[name]
                        hypotheses += [self.tokenizer.decode([token]) for token in predicted]
                        references += [[self.tokenizer.decode([token])] for token in expected]
                    nll_sum += float(sums.nll)
                    loss_sum += float(sums.loss)
                    tokens += sums.tokens
            documents, at_limit = self._sample_documents()
        finally:
            model.train(was_training)
        figures = {
            "loss": loss_sum / max(tokens, 1),
            "ppl": perplexity(nll_sum, tokens),
            "bpb": nll_sum / math.log(2) / max(self.bytes, 1e-9),
        }
        for name, (hypotheses, references) in guesses.items():
            figures.update(score(hypotheses, references, [name]))
        if documents:
            figures.update(score(documents, [[""]] * len(documents), self.rules))
            figures[AT_LIMIT] = float(at_limit)
            if self.split == "test":
                advice = continuation_limit_advice(self.generation, self.max_len)
                warn_at_limit(at_limit, len(documents), "sampled documents", advice)
        samples = [("", "", document) for document in documents[: self.num_samples]]
        return EvaluationResult(figures=figures, predictions=documents, samples=samples)

    def _sample_documents(self) -> tuple[list[str], int]:
        """Documents sampled from an empty prompt (with the run's decoding settings), on
        which the rule metrics (`dyck`) are scored, and how many stopped at the limit."""
        if not self.sampled_documents:
            return [], 0
        nbests = continue_prompts(
            self.model,
            [[EOS_ID]] * self.sampled_documents,
            self.generation,
            max_len=self.max_len,
            max_tokens=self.max_tokens,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            progress=False,
        )
        documents = [one_line(self.tokenizer.decode(nbest[0].tokens)) for nbest in nbests]
        return documents, count_at_limit(nbests)
