"""MQAR recall of trained runs at a fixed number of key-value pairs.

A run of `experiment=mqar` is trained and validated on examples of `data.min_len` to
`data.max_len` pairs, and its `mqar` figure is the mean over them. Recall falls with the
number of pairs a fixed-size state must hold, so this scores each run on fresh examples of
exactly N pairs for each N of `--pairs`: the share of answers (the value after each queried
key) that the model's argmax predicts, teacher forced, as the `mqar` metric counts them.

    python scripts/mqar_by_pairs.py outputs/mqar_softmax outputs/mqar_delta --pairs 16 32 64

Each argument is a run dir (its best.pt), a checkpoint or an export dir. The examples come
from `seq2seq.data.mqar.draw_example` with their own seed (`--seed`), so they are the same
for every run; at 16 pairs or more an example repeating a training one is vanishingly rare.
Prints a table, writes JSON (`--output`).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

import seq2seq
from seq2seq.data.mqar import answer_offsets, draw_example
from seq2seq.jobs.trained_run import TrainedRun
from seq2seq.tasks.language_modeling_evaluation import answer_predictions
from seq2seq.tokenizer import EOS_ID


@torch.no_grad()
def recall(run: TrainedRun, texts: list[str], batch: int) -> float:
    """The share of the answers of `texts` that `run`'s model predicts (argmax)."""
    tokenizer = run.task.tokenizer  # type: ignore[attr-defined]
    right = total = 0
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        documents = [[EOS_ID, *tokenizer.encode(text), EOS_ID] for text in chunk]
        width = max(len(document) for document in documents)
        tokens = torch.zeros(len(documents), width, dtype=torch.long)
        mask = torch.zeros(len(documents), width - 1, dtype=torch.bool)
        for row, document in enumerate(documents):
            tokens[row, : len(document)] = torch.tensor(document)
            mask[row, : len(document) - 1] = True
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = run.model(inputs, mask)
        # The text's character c is target c (the eos before it is input 0).
        predicted, expected = answer_predictions(
            logits, targets, [answer_offsets(text) for text in chunk]
        )
        right += sum(p == e for p, e in zip(predicted, expected, strict=True))
        total += len(expected)
    return 100.0 * right / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run dirs, checkpoints or export dirs")
    parser.add_argument("--pairs", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--examples", type=int, default=500, help="examples per pair count")
    parser.add_argument("--seed", type=int, default=20261208)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("mqar_by_pairs.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    examples = {
        pairs: [
            draw_example(random.Random(f"{args.seed}-{pairs}-{i}"), num_pairs=pairs)
            for i in range(args.examples)
        ]
        for pairs in args.pairs
    }
    rows = []
    print("run" + "".join(f"  {pairs:>3} pairs" for pairs in args.pairs))
    for path in args.runs:
        run = seq2seq.load_pretrained(path)
        scores = {pairs: recall(run, texts, args.batch) for pairs, texts in examples.items()}
        rows.append({"run": path, "recall": scores})
        print(path + "".join(f"  {score:8.2f}%" for score in scores.values()))
    settings = {key: value for key, value in vars(args).items() if key not in {"runs", "output"}}
    args.output.write_text(
        json.dumps({"settings": {**settings, "output": str(args.output)}, "rows": rows}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
