"""seq2seq-export: a trained run as a self-contained dir that `seq2seq.load_pretrained` and
seq2seq-generate load without the run dir, and that `huggingface-cli upload` publishes as it
is (the layout: `seq2seq.jobs.export_files`).

The weights are those `rebuild_run` loads for the checkpoint (`inference_weights`), so the
export decodes exactly as the checkpoint does. Everything is written into a temporary dir
beside the destination, synced, then renamed into place: a failure leaves nothing
half-written. An existing destination must be empty, or hold an earlier export and nothing
else (it is then replaced, as seq2seq-average replaces an earlier average); a dir with
other files (a Hub clone's `.git`, notes) is refused, since replacing it would lose them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import save_model

from seq2seq import __version__
from seq2seq.atomic import write_text_atomic
from seq2seq.jobs.export_files import (
    CARD_NAME,
    CONFIG_NAME,
    FORMAT,
    MANIFEST_NAME,
    TOKENIZER_FILE,
    VERSION,
    WEIGHTS_NAME,
    read_manifest,
    sha256,
    tokenizer_proto,
)
from seq2seq.jobs.model_card import Provenance, model_card
from seq2seq.jobs.onnx_export import check_onnx_packages, write_onnx
from seq2seq.jobs.trained_run import TrainedRun, checkpoint_file, rebuild_run
from seq2seq.tokenizer.stored import CHECKPOINT_KEY as TOKENIZER_KEY
from seq2seq.training.checkpoint import AVERAGED_KEY, BEST_NAME, BEST_NAMES, load_checkpoint
from seq2seq.training.run_files import HYDRA_SUBDIR, METRICS_NAME, read_metrics
from seq2seq.writable import directory_problem

log = logging.getLogger("seq2seq.export")


def files_under(directory: Path) -> list[str]:
    """Every file under `directory`, as sorted POSIX paths relative to it."""
    return sorted(
        path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()
    )


def source_checkpoint(source: Path) -> tuple[Path, Path | None]:
    """The checkpoint file to export (a run dir's `checkpoints/best.pt`, as seq2seq-generate
    picks) and the run dir it belongs to, if any (for its metrics.json and command line)."""
    if not source.exists():
        raise FileNotFoundError(
            f"{source} does not exist; give a run dir of seq2seq-train or a checkpoint .pt file"
        )
    if source.is_dir() and (source / MANIFEST_NAME).is_file():
        raise ValueError(f"{source} is already an export dir; copy it (cp -r) to publish it")
    checkpoint = checkpoint_file(str(source))
    if source.is_dir():
        return checkpoint, source
    if checkpoint.parent.name == "checkpoints":
        return checkpoint, checkpoint.parent.parent
    return checkpoint, None


def _earlier_export_files(directory: Path) -> set[str] | None:
    """The files an earlier export wrote in `directory` (its manifest's list), or None."""
    if not (directory / MANIFEST_NAME).is_file():
        return None
    try:
        files = read_manifest(directory).get("files")
    except ValueError:
        return None
    return set(files) if isinstance(files, list) else None


def check_destination(out_dir: Path) -> bool:
    """Refuse a destination that is not a new or empty directory or an earlier export with
    nothing else in it; returns whether it holds an earlier export to replace."""
    if out_dir.is_symlink():
        raise ValueError(f"{out_dir} is a symlink; give the directory it points to, or a new one")
    problem = directory_problem(out_dir.parent)
    if problem is not None:
        raise ValueError(f"{out_dir}: {problem}; give a directory in a writable place")
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory; give a new or empty directory")
    if not any(out_dir.iterdir()):
        return False
    present = [
        path.relative_to(out_dir).as_posix()
        for path in out_dir.rglob("*")
        if not path.is_dir() or not any(path.iterdir())
    ]
    earlier = _earlier_export_files(out_dir)
    others = sorted(set(present) - (earlier or set()))
    if others:
        what = "an earlier export with other files" if earlier is not None else "not empty"
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ValueError(
            f"{out_dir} exists and is {what} ({shown}); give a new or empty directory (only an "
            "earlier export with nothing else in it is replaced)"
        )
    return True


def _tokenizer_files(directory: Path) -> dict[str, list[str]]:
    """The files the task saved in `directory`, by the sha256 of the tokenizer each holds."""
    found: dict[str, list[str]] = {}
    for name in files_under(directory):
        found.setdefault(sha256(tokenizer_proto(directory / name)), []).append(name)
    return found


def exported_task_state(state: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    """The task's state (`Task.state`) as the manifest holds it: each tokenizer as the file
    the task saved it to in `directory` (with its sha256), the rest as JSON data."""
    saved = _tokenizer_files(directory)
    exported: dict[str, Any] = {}
    for key, value in state.items():
        if key == TOKENIZER_KEY and isinstance(value, Mapping):
            sides = {}
            for side, tensor in value.items():
                digest = sha256(tensor.numpy().tobytes())
                names = saved.get(digest)
                if not names:
                    raise ValueError(
                        f"the task saved no file holding its {side} tokenizer (Task.save_files); "
                        "it cannot be exported"
                    )
                # Shared tokenizers: the file named for the side where there is one.
                name = next((n for n in names if Path(n).stem == side), names[0])
                sides[side] = {TOKENIZER_FILE: name, "sha256": digest}
            exported[key] = sides
            continue
        try:
            json.dumps(value)
        except TypeError as error:
            raise ValueError(
                f"the task's state entry {key!r} is not plain data ({error}); seq2seq-export "
                "has no file format for it"
            ) from error
        exported[key] = value
    return exported


def provenance_of(checkpoint: Mapping[str, Any], path: Path, run_dir: Path | None) -> Provenance:
    """What the card says of where the weights come from: the run's figures only when they
    were measured with these weights (its best.pt, at the step metrics.json names)."""
    trainer = checkpoint.get("trainer")
    step = int(trainer.get("step", -1)) if isinstance(trainer, Mapping) else -1
    averaged = checkpoint.get(AVERAGED_KEY)
    metrics: dict[str, Any] | None = None
    note = "No figures: the checkpoint is not in a run dir with a metrics.json."
    overrides = None
    if run_dir is not None:
        recorded = read_metrics(run_dir)
        best_step = (recorded.get("best") or {}).get("step")
        if not recorded:
            note = f"No figures: the run dir has no {METRICS_NAME} (training did not finish)."
        elif path.name not in BEST_NAMES or averaged is not None:
            note = (
                f"No figures: the run's {METRICS_NAME} measures {BEST_NAME}, not this checkpoint; "
                "`seq2seq-evaluate --checkpoint <this dir> --split test` measures it."
            )
        elif best_step is not None and best_step != step:
            note = (
                f"No figures: the run's {METRICS_NAME} measures the best checkpoint of step "
                f"{best_step}, but {BEST_NAME} is of step {step} (written after it)."
            )
            log.warning("%s: %s", run_dir, note)
        else:
            metrics = recorded
        overrides_file = run_dir / HYDRA_SUBDIR / "overrides.yaml"
        if overrides_file.is_file():
            loaded = yaml.safe_load(overrides_file.read_text(encoding="utf-8"))
            overrides = [str(item) for item in loaded or []]
    return Provenance(
        checkpoint=path.name if run_dir is None else os.path.relpath(path, run_dir),
        step=step,
        averaged_from=averaged if isinstance(averaged, Mapping) else None,
        metrics=metrics,
        metrics_note=note,
        overrides=overrides,
    )


def _sync_tree(directory: Path) -> None:
    """fsync every file and dir under `directory`, so that the rename publishes data that
    is on disk."""
    for path in [*sorted(directory.rglob("*")), directory]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_export(
    directory: Path,
    *,
    run: TrainedRun,
    config_text: str,
    provenance: Provenance,
    name: str,
    onnx: bool = False,
) -> list[str]:
    """Write the export's files into the empty `directory`; with `onnx`, the ONNX graphs
    too (`seq2seq.jobs.onnx_export`). Returns the lines naming what ONNX left out."""
    run.task.save_files(directory)
    task_files = files_under(directory)
    task_state = exported_task_state(run.task.state(), directory)
    model = run.model.cpu()
    # save_model stores a tied tensor once (safetensors refuses shared storage) and names
    # its other names in the metadata; "format: pt" is what Hub tools expect there.
    save_model(
        model, str(directory / WEIGHTS_NAME), metadata={"format": "pt"}, force_contiguous=True
    )
    write_text_atomic(config_text, directory / CONFIG_NAME)
    graphs = write_onnx(model, directory) if onnx else None
    parameters = sum(parameter.numel() for parameter in model.parameters())
    card = model_card(
        run.config,
        name=name,
        kind=type(run.task).model_kind,
        parameters=parameters,
        provenance=provenance,
        task_files=task_files,
        onnx=None if graphs is None else graphs.manifest(),
    )
    write_text_atomic(card, directory / CARD_NAME)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "seq2seq_version": __version__,
        "task": run.config.task,
        "checkpoint": {
            "file": provenance.checkpoint,
            "step": provenance.step,
            AVERAGED_KEY: provenance.averaged_from,
        },
        "parameters": parameters,
        "task_state": task_state,
        **({} if graphs is None else {"onnx": graphs.manifest()}),
        "files": sorted([*files_under(directory), MANIFEST_NAME]),
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", directory / MANIFEST_NAME)
    return [] if graphs is None else graphs.not_exported


def _put_in_place(staging: Path, out_dir: Path, *, replace: bool) -> None:
    """Rename the written `staging` dir to `out_dir`; an earlier export there is moved
    aside first and removed after, or put back if the rename fails."""
    if not replace:
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked); a file put there since makes this fail
        os.rename(staging, out_dir)
        return
    aside = staging.with_name(f"{staging.name}.old")
    os.rename(out_dir, aside)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(aside, out_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def export(source: Path, out_dir: Path, *, onnx: bool = False) -> Path:
    """Export the run dir or checkpoint `source` into `out_dir`, with ONNX graphs when
    `onnx`; returns `out_dir`. What ONNX leaves out is logged, one warning line each."""
    if onnx:
        check_onnx_packages()
    out_dir = Path(os.path.abspath(out_dir))
    path, run_dir = source_checkpoint(source)
    replace = check_destination(out_dir)
    checkpoint = load_checkpoint(path)
    run = rebuild_run(checkpoint, path)
    facts = provenance_of(checkpoint, path, run_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.export-{os.getpid()}-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        left_out = write_export(
            staging,
            run=run,
            config_text=checkpoint["config"],
            provenance=facts,
            name=out_dir.name,
            onnx=onnx,
        )
        _sync_tree(staging)
        _put_in_place(staging, out_dir, replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for line in left_out:
        log.warning("%s", line)
    directory = os.open(out_dir.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    log.info(
        "exported %s (step %d) into %s%s",
        path,
        facts.step,
        out_dir,
        ", replacing the earlier export" if replace else "",
    )
    return out_dir
