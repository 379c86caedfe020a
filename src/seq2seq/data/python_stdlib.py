"""A text corpus every machine has offline: the running Python's standard-library sources.

Every `.py` file under `sysconfig.get_paths()["stdlib"]` (site-packages and `__pycache__`
left out) is one document, in the order of its relative path; a file that is not UTF-8 is
left out and counted. Each file goes to a split by a salted hash of its relative path:

    bucket = int(sha256(("python-stdlib-v1:" + path).encode()).hexdigest(), 16) % 100
    bucket < 2: test; 2 <= bucket < 4: validation; otherwise train

so the split depends on nothing but the file list, which depends on the Python version:
the version is part of every split's fingerprint (and of `metrics.json`'s data report
through the document counts), so runs on other versions do not share cached tokenizers or
data. A byte-level language model of source code: long documents with long-range structure
(indentation, matching brackets, names defined far above their use).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import sysconfig
from pathlib import Path

import datasets

from seq2seq.data.columns import TEXT

log = logging.getLogger("seq2seq.data")

SALT = "python-stdlib-v1:"
TEST_BUCKETS = range(0, 2)
VALIDATION_BUCKETS = range(2, 4)
LEFT_OUT = ("site-packages", "__pycache__")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative: str) -> str:
    bucket = int(hashlib.sha256((SALT + relative).encode()).hexdigest(), 16) % 100
    if bucket in TEST_BUCKETS:
        return "test"
    return "validation" if bucket in VALIDATION_BUCKETS else "train"


def source_files(root: Path) -> list[Path]:
    """The `.py` files under `root`, site-packages and caches left out, in path order."""
    return sorted(
        path
        for path in root.rglob("*.py")
        if path.is_file() and not any(part in LEFT_OUT for part in path.relative_to(root).parts)
    )


def python_stdlib_splits(
    *, train_size: int | None, validation_size: int | None, test_size: int | None
) -> datasets.DatasetDict:
    """`train`, `validation` and `test` of the standard-library sources, each capped at its
    size in documents (the first ones in path order; None keeps all)."""
    root = stdlib_root()
    texts: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    undecodable = 0
    for path in source_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        texts[split_of(path.relative_to(root).as_posix())].append(text)
    if undecodable:
        log.warning("python_stdlib: %d files under %s are not UTF-8: left out", undecodable, root)
    caps = {"train": train_size, "validation": validation_size, "test": test_size}
    version = ".".join(map(str, sys.version_info[:3]))
    result = {}
    for split, documents in texts.items():
        cap = caps[split]
        kept = documents if cap is None else documents[:cap]
        if cap is not None and cap < len(documents):
            log.warning(
                "python_stdlib %s: data.%s_size=%d keeps %d of %d files",
                split,
                split,
                cap,
                cap,
                len(documents),
            )
        dataset = datasets.Dataset.from_dict(
            {TEXT: kept}, features=datasets.Features({TEXT: datasets.Value("string")})
        )
        fingerprint = hashlib.sha256(
            f"{SALT}{version}/{split}/{cap}/{len(kept)}/{sum(map(len, kept))}".encode()
        ).hexdigest()[:32]
        dataset._fingerprint = fingerprint
        result[split] = dataset
        log.info("python_stdlib %s (Python %s): %d files", split, version, len(kept))
    return datasets.DatasetDict(result)
