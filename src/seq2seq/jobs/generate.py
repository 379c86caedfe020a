"""One seq2seq-generate job: check the settings and outputs, load the run, let its task
predict, write every output."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from seq2seq.config.checks import check_precision
from seq2seq.config.generate import (
    STDIO,
    GenerateConfig,
    check_generate_config,
    checkpoint_values,
    decoding_generation,
    typed_generation,
)
from seq2seq.config.generation import GenerationConfig
from seq2seq.config.keys import check_known_keys
from seq2seq.config.training import Precision
from seq2seq.jobs.ensemble import load_ensemble
from seq2seq.jobs.generate_files import (
    check_destinations,
    in_job_dir,
    read_lines,
    require_text,
    write_output,
)
from seq2seq.jobs.trained_run import checkpoint_file
from seq2seq.tasks import DecodingOptions
from seq2seq.training.devices import resolve_device
from seq2seq.training.precision import PRECISIONS

log = logging.getLogger("seq2seq.generate")


def decoding_precision(
    requested: Precision | None, trained: Precision, device: torch.device
) -> str:
    """The autocast precision: `requested`, or else the run's own where `device` has it."""
    if requested is None:
        if trained == Precision.fp16 and device.type != "cuda":
            log.info("the run trained in fp16, which needs CUDA; decoding in fp32 on %s", device)
            return Precision.fp32
        return trained
    check_precision(requested, device, field="precision")
    return requested


def _log_generation_difference(run: GenerationConfig, used: GenerationConfig) -> None:
    differences = [
        f"{name}={value!r} (run: {asdict(run)[name]!r})"
        for name, value in asdict(used).items()
        if asdict(run)[name] != value
    ]
    if differences:
        log.info("decoding differs from the run's generation settings: %s", ", ".join(differences))


def generate_from_config(
    cfg_node: DictConfig,
    *,
    command_line: Sequence[str] | None = None,
    job_dir: Path | None = None,
) -> list[str]:
    """Run one seq2seq-generate job; returns the prediction of every input, in order.

    `command_line`: the overrides the user typed; decoding then starts from the run's
    generation settings (see `decoding_generation`); None decodes with `cfg_node.generation`
    as composed. `job_dir`: a multirun job's own dir, where relative output paths go.
    """
    if OmegaConf.is_missing(cfg_node, "checkpoint"):
        raise ValueError("checkpoint is required: checkpoint=<run dir> or checkpoint=<file.pt>")
    check_known_keys(cfg_node)
    cfg: GenerateConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    if job_dir is not None:
        cfg = in_job_dir(cfg, job_dir)
    check_generate_config(cfg)
    if cfg.input is None and cfg.split is None:
        cfg = replace(cfg, input=STDIO)
    device = resolve_device(cfg.device, field="device")
    names = checkpoint_values(cfg.checkpoint)
    checkpoints = {name: checkpoint_file(name) for name in names}
    check_destinations(cfg, checkpoints)
    lines = None if cfg.input is None else read_lines(cfg.input)

    # Several checkpoints decode as one ensemble, led by the first run's config and task.
    loaded = load_ensemble([checkpoints[name] for name in names], device, names=names)
    run = loaded.first
    if lines is not None and not run.task.blank_inputs:
        require_text(lines, str(cfg.input))
    precision = decoding_precision(cfg.precision, run.config.trainer.precision, device)
    generation = decoding_generation(run.config.generation, cfg.generation, command_line)
    options = DecodingOptions(
        device=device,
        autocast_dtype=PRECISIONS[precision],
        max_tokens=run.config.data.max_tokens if cfg.max_tokens is None else cfg.max_tokens,
        nbest=cfg.nbest_output is not None,
        references=cfg.references_output is not None,
        top_k=cfg.top_k,
    )
    try:
        # The same settings as training's test decoding: split=test reproduces
        # predictions.txt.
        predictions = run.task.predict(
            loaded.model, lines=lines, split=cfg.split, generation=generation, options=options
        )
    except ValueError as error:
        if not str(error).startswith("generation.") or command_line is None:
            raise
        if typed_generation(command_line)[0]:
            raise
        raise ValueError(
            f"{error} (decoding starts from the run's generation settings; "
            "generation=<group> starts from that group's instead)"
        ) from error
    _log_generation_difference(run.config.generation, generation)
    outputs = {"output": predictions.lines}
    if predictions.nbest is not None:
        outputs["nbest_output"] = predictions.nbest
    if predictions.references is not None:
        outputs["references_output"] = predictions.references
    for option, rows in outputs.items():
        write_output(rows, getattr(cfg, option), option=option)
    log.info("decoded %d inputs", len(predictions.lines))
    return predictions.lines
