"""The files of an export dir of seq2seq-export, and the checkpoint they are read back as.

    README.md          the model card, with Hugging Face Hub front matter
    export.json        the manifest: format and version, where the checkpoint came from,
                       the task's state (tokenizers as file names, labels as data) and
                       every file of the export
    config.yaml        the resolved training config the checkpoint held
    model.safetensors  the weights; a shared tensor (tied embeddings) is stored once, its
                       other names in the file's metadata
    tokenizer/         the tokenizers as the task saves them in a run dir (SentencePiece
                       `.model` with a readable `.vocab`, or `.byte`); a classifier's
                       labels.txt beside it

`read_export` turns them into the dict a `.pt` checkpoint loads as (`config`, `model` and
the task's `Task.state` entries), so an export and the checkpoint it was written from
rebuild the same run through one path (`seq2seq.jobs.trained_run.rebuild_run`). Nothing
is unpickled: the weights are safetensors, the rest YAML, JSON and the tokenizers' own
formats.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from seq2seq.tokenizer.byte import PROTO as BYTE_PROTO
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY

MANIFEST_NAME = "export.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"
CARD_NAME = "README.md"
FORMAT = "seq2seq-export"
VERSION = 1
"""The manifest's format version; a reader refuses a newer one."""
TOKENIZER_FILE = "file"
"""In the manifest's task state, each tokenizer side is `{"file": <path>, "sha256": ...}`."""


def tokenizer_proto(path: Path) -> bytes:
    """The serialized tokenizer (`Tokenizer.model_proto`) of a file `Tokenizer.save` wrote:
    a SentencePiece `.model` is its proto; a `.byte` file is the byte tokenizer's marker
    and a newline."""
    data = path.read_bytes()
    return BYTE_PROTO if path.suffix == ".byte" and data.strip() == BYTE_PROTO else data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export dir; an unreadable or foreign one is one clear error."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable export manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not the manifest of a seq2seq-export dir")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{path} has format version {version!r}; this seq2seq reads versions up to "
            f"{VERSION}: upgrade seq2seq"
        )
    return manifest


def _exported_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(
            f"export dir {directory} lacks {name}, which its {MANIFEST_NAME} lists; export "
            "the run again (or copy the whole dir)"
        )
    return path


def _tokenizer_tensor(directory: Path, side: str, entry: Any) -> torch.Tensor:
    if not isinstance(entry, dict) or not isinstance(entry.get(TOKENIZER_FILE), str):
        raise ValueError(f"{directory / MANIFEST_NAME} names no file for the {side} tokenizer")
    path = _exported_file(directory, entry[TOKENIZER_FILE])
    proto = tokenizer_proto(path)
    if sha256(proto) != entry.get("sha256"):
        raise ValueError(
            f"{path} is not the {side} tokenizer that was exported (its sha256 differs from "
            f"{MANIFEST_NAME}'s); the model's token ids would mean other pieces: export again"
        )
    return torch.frombuffer(bytearray(proto), dtype=torch.uint8)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every weight of the model, the names that `safetensors.torch.save_model` dropped for
    a shared tensor (it records each as `dropped name: kept name` in the metadata) given
    the kept tensor again, so the state dict loads strictly."""
    try:
        with safe_open(str(path), framework="pt") as weights_file:
            names = weights_file.keys()  # a safe_open handle has keys() but no iterator
            weights = {name: weights_file.get_tensor(name) for name in names}
            metadata = weights_file.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error})") from error
    for name, kept in metadata.items():
        if name not in weights and kept in weights:
            weights[name] = weights[kept]
    return weights


def read_export(weights: Path) -> dict[str, Any]:
    """The checkpoint an export dir holds, from its weights file and the files beside it:
    `config` (YAML text), `model` (the weights) and the task's state."""
    directory = weights.parent
    if weights.name != WEIGHTS_NAME or not (directory / MANIFEST_NAME).is_file():
        raise ValueError(
            f"{weights} is not the {WEIGHTS_NAME} of an export dir (with {MANIFEST_NAME}, "
            f"{CONFIG_NAME} and the tokenizers beside it); pass the export dir of "
            "seq2seq-export"
        )
    manifest = read_manifest(directory)
    state: dict[str, Any] = dict(manifest.get("task_state") or {})
    if isinstance(state.get(TOKENIZER_KEY), dict):
        state[TOKENIZER_KEY] = {
            side: _tokenizer_tensor(directory, side, entry)
            for side, entry in state[TOKENIZER_KEY].items()
        }
    return {
        **state,
        "config": _exported_file(directory, CONFIG_NAME).read_text(encoding="utf-8"),
        "model": read_weights(_exported_file(directory, WEIGHTS_NAME)),
    }
