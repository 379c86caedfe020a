"""Language-modeling blocks: documents cut into the sequences a decoder trains on.

Every document is preceded by an end-of-document token (eos) and the last one followed by
one: `eos d1 eos d2 eos ... dn eos`. A block of B positions reads B tokens and predicts the
B next ones, so it spans B + 1 tokens of that stream. Packed (the default, as fairseq's
and Hugging Face's LM recipes do), block k spans stream[kB : kB + B + 1]; a training
split's last incomplete block is dropped (and counted), a held-out split keeps it so that
every token is scored. Per document, each document is one block, cut to B + 1 tokens
(and counted).

Each predicted token carries a share of its document's UTF-8 bytes (plus one byte for
its end, as a newline would), so that bits per byte, the summed loss over the summed
shares, compares runs whatever their tokenizer; with every token scored the shares add up
to the text's bytes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

BLOCK = "block"
"""The column of a block's token ids (B + 1 at most: inputs and targets overlap)."""
BYTES = "bytes"
"""The column of a block's share of the text's bytes (its targets')."""


@dataclass(frozen=True)
class BlockReport:
    """What cutting one split into blocks did; `kept` documents reach a block."""

    documents: int
    dropped_empty: int
    blocks: int
    tokens: int
    """Tokens of the stream that are predicted (eos included)."""
    dropped_tokens: int
    """Of a training split's last, incomplete block."""
    truncated: int
    """Documents cut to the block (per-document blocks)."""
    block_size: int

    @property
    def total(self) -> int:
        return self.documents

    @property
    def kept(self) -> int:
        return self.documents - self.dropped_empty

    def __add__(self, other: BlockReport) -> BlockReport:
        """Both parts of a split together (the windows of a stream)."""
        return replace(
            self,
            documents=self.documents + other.documents,
            dropped_empty=self.dropped_empty + other.dropped_empty,
            blocks=self.blocks + other.blocks,
            tokens=self.tokens + other.tokens,
            dropped_tokens=self.dropped_tokens + other.dropped_tokens,
            truncated=self.truncated + other.truncated,
        )

    def __str__(self) -> str:
        return (
            f"{self.kept}/{self.documents} documents ({self.dropped_empty} empty dropped) in "
            f"{self.blocks} blocks of up to {self.block_size} tokens; {self.dropped_tokens} "
            f"tokens of an incomplete last block dropped; {self.truncated} documents truncated"
        )


def make_blocks(
    documents: list[list[int]],
    texts: list[str],
    *,
    block_size: int,
    eos_id: int,
    packed: bool,
    complete_only: bool,
) -> tuple[list[list[int]], list[float], BlockReport]:
    """The blocks (token lists of at most block_size + 1) of `documents` (their token ids,
    `texts` their text), each block's byte share, and the report. `complete_only`: drop a
    packed stream's incomplete last block (training)."""
    kept = [(ids, text) for ids, text in zip(documents, texts, strict=True) if ids]
    dropped_empty = len(documents) - len(kept)
    span = block_size + 1
    blocks: list[list[int]] = []
    shares: list[float] = []
    dropped_tokens = truncated = 0
    if packed:
        stream = np.fromiter((token for ids, _ in kept for token in (eos_id, *ids)), dtype=np.int64)
        stream = np.append(stream, eos_id)
        weights = np.concatenate(
            [np.zeros(1)]
            + [
                np.full(len(ids) + 1, (len(text.encode()) + 1) / (len(ids) + 1))
                for ids, text in kept
            ]
        )
        predicted = len(stream) - 1
        count = predicted // block_size if complete_only else -(-predicted // block_size)
        dropped_tokens = predicted - count * block_size if complete_only else 0
        for k in range(count):
            start = k * block_size
            blocks.append(stream[start : start + span].tolist())
            shares.append(float(weights[start + 1 : start + span].sum()))
    else:
        for ids, text in kept:
            tokens = [eos_id, *ids, eos_id]
            share = (len(text.encode()) + 1) / (len(ids) + 1)
            truncated += len(tokens) > span
            blocks.append(tokens[:span])
            shares.append(share * (min(len(tokens), span) - 1))
    report = BlockReport(
        documents=len(documents),
        dropped_empty=dropped_empty,
        blocks=len(blocks),
        tokens=sum(len(block) - 1 for block in blocks),
        dropped_tokens=dropped_tokens,
        truncated=truncated,
        block_size=block_size,
    )
    return blocks, shares, report
