"""The model card of an export dir: its README.md, as the Hugging Face Hub reads one.

YAML front matter (`library_name`, `tags`, `pipeline_tag`, and a `model-index` of the test
figures when the run measured them for the exported weights), then the task, the data, the
figures, the command that trained it, the model's size and how to load it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from seq2seq.config.schema import TrainConfig
from seq2seq.jobs.export_files import CONFIG_NAME, MANIFEST_NAME, WEIGHTS_NAME
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

LIBRARY_NAME = "seq2seq"


@dataclass(frozen=True)
class HubTask:
    """How the Hub and the card's reader see a task of `seq2seq.tasks.TASKS`."""

    pipeline_tag: str
    """The Hub's task (its `pipeline_tag` and the model-index's `task.type`)."""
    summary: str
    """What the model does, after "A model that is ..."."""
    prediction: str
    """What seq2seq-generate writes for an input line."""


HUB_TASKS = {
    "seq2seq": HubTask(
        "text2text-generation", "an encoder-decoder from source to target text", "a hypothesis"
    ),
    "classification": HubTask(
        "text-classification", "an encoder classifier from text to a label", "a label"
    ),
    "language_modeling": HubTask(
        "text-generation", "a decoder-only language model", "a continuation of the prompt"
    ),
}
"""One entry per task of `seq2seq.tasks.TASKS` (a test holds them equal)."""


@dataclass(frozen=True)
class Provenance:
    """Where the exported weights come from, and what their run recorded about them."""

    checkpoint: str
    """The checkpoint exported: its path in its run dir (`checkpoints/best.pt`), or its
    file name outside one (a published card names no local path)."""
    step: int
    """The optimizer step it was written at (-1: unknown)."""
    averaged_from: Mapping[str, Any] | None
    """seq2seq-average's record (`files`, `steps`) for an averaged checkpoint."""
    metrics: Mapping[str, Any] | None
    """The run's metrics.json, when its figures are those of the exported weights."""
    metrics_note: str
    """Why there are no figures, when `metrics` is None."""
    overrides: Sequence[str] | None
    """The run's command-line overrides (its .hydra/overrides.yaml), when recorded."""


def _attention_kinds(cfg: TrainConfig, kind: str) -> list[str]:
    model = cfg.model
    kinds = []
    if kind != "decoder_lm":
        kinds.append(model.encoder.self_attention)
    if kind != "encoder_classifier":
        kinds.append(model.decoder.self_attention)
    if kind == "encoder_decoder":
        kinds.append(model.decoder.cross_attention)
    return kinds


def _figure(value: Any) -> float:
    return round(float(value), 4)


def _numbers(figures: Mapping[str, Any]) -> dict[str, float]:
    return {
        name: _figure(value)
        for name, value in figures.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def index_figures(cfg: TrainConfig, metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The run's test figures of its metrics (`trainer.metrics`), for the model-index."""
    test = _numbers((metrics or {}).get("test") or {})
    return {name: test[name] for name in cfg.trainer.metrics if name in test}


def front_matter(cfg: TrainConfig, *, name: str, kind: str, provenance: Provenance) -> str:
    hub = HUB_TASKS[cfg.task]
    tags = [LIBRARY_NAME, cfg.task, kind.replace("_", "-")]
    tags += sorted({part for kinds in _attention_kinds(cfg, kind) for part in _kinds(kinds)})
    meta: dict[str, Any] = {
        "library_name": LIBRARY_NAME,
        "tags": list(dict.fromkeys(tags)),
        "pipeline_tag": hub.pipeline_tag,
    }
    figures = index_figures(cfg, provenance.metrics)
    if figures:
        dataset = _dataset_name(cfg)
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": hub.pipeline_tag, "name": cfg.task},
                        "dataset": {"name": dataset, "type": dataset, "split": "test"},
                        "metrics": [
                            {"type": metric, "value": value, "name": f"test {metric}"}
                            for metric, value in figures.items()
                        ],
                    }
                ],
            }
        ]
    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n"


def _kinds(schedule: str) -> list[str]:
    """The attention kinds of a layer schedule (`delta*3+softmax` -> delta, softmax)."""
    return [part.split("*")[0].strip() for part in schedule.split("+") if part.strip()]


def _dataset_name(cfg: TrainConfig) -> str:
    data = cfg.data
    if data.builtin is not None:
        return data.builtin
    return ":".join(part for part in (data.path, data.name) if part) or "unknown"


def _data_section(cfg: TrainConfig, metrics: Mapping[str, Any] | None) -> list[str]:
    data = cfg.data
    if data.builtin is not None:
        lines = [f"The built-in dataset `{data.builtin}` (`data.builtin`), seed {cfg.seed}."]
    else:
        files = {role: path for role, path in vars(data.data_files).items() if path}
        lines = [
            f"`datasets.load_dataset({data.path!r}"
            + (f", {data.name!r}" if data.name else "")
            + ")`"
            + (f" with the files {files}" if files else "")
            + "."
        ]
    columns = {
        "seq2seq": f"source column `{data.source}`, target column `{data.target}`",
        "classification": f"text column `{data.text}`"
        + (f" and `{data.text_pair}`" if data.text_pair else "")
        + f", label column `{data.label}`",
        "language_modeling": f"text column `{data.text}`, blocks of {data.block_size} tokens",
    }.get(cfg.task)
    if columns:
        lines.append(f"Columns: {columns}.")
    tokenizer = cfg.tokenizer
    lines.append(
        f"Tokenizer: `{tokenizer.model_type}`"
        + (
            ""
            if tokenizer.model_type == "byte"
            else f", vocabulary of at most {tokenizer.vocab_size}"
        )
        + (", shared by source and target" if tokenizer.shared else ", one per side")
        + " (in `tokenizer/`)."
    )
    counts = (metrics or {}).get("data") or {}
    if counts:
        lines += ["", "| split | examples kept | of |", "|---|---|---|"]
        lines += [
            f"| {split} | {report.get('kept', '?')} | {report.get('total', '?')} |"
            for split, report in counts.items()
            if isinstance(report, Mapping)
        ]
    return lines


def _results_section(provenance: Provenance) -> list[str]:
    metrics = provenance.metrics
    if metrics is None:
        return [provenance.metrics_note]
    lines = [f"From the run's metrics.json, measured with these weights (step {provenance.step}):"]
    test = _numbers(metrics.get("test") or {})
    if test:
        lines += ["", "| test split | value |", "|---|---|"]
        lines += [f"| {name} | {value:g} |" for name, value in test.items()]
    best = metrics.get("best") or {}
    monitor = metrics.get("monitor")
    if monitor in best:
        lines += [
            "",
            f"Best validation {monitor}: {_figure(best[monitor]):g} at step {best.get('step')}.",
        ]
    if "stopped" in metrics:
        lines.append(f"Training stopped: {metrics['stopped']} at step {metrics.get('step')}.")
    return lines


def _model_section(cfg: TrainConfig, kind: str, parameters: int) -> list[str]:
    model = cfg.model
    parts = []
    if kind != "decoder_lm":
        parts.append(f"encoder {model.encoder.layers} layers (`{model.encoder.self_attention}`)")
    if kind != "encoder_classifier":
        cross = (
            f", cross-attention `{model.decoder.cross_attention}`"
            if kind == "encoder_decoder"
            else ""
        )
        parts.append(
            f"decoder {model.decoder.layers} layers (`{model.decoder.self_attention}`{cross})"
        )
    return [
        f"`{kind}`, {parameters:,} parameters ({parameters / 1e6:.2f}M): d_model "
        f"{model.d_model}, {model.heads} heads, d_ff {model.d_ff}, {'; '.join(parts)}; norm "
        f"`{model.norm}` ({model.norm_position}), activation `{model.activation}`, positions "
        f"`{model.position}` up to {model.max_len}. The whole config is `config.yaml`."
    ]


_ONNX_SETUP = """\
import json

import numpy as np
import onnxruntime

NAME = {name!r}
onnx = json.load(open(f"{{NAME}}/export.json"))["onnx"]
step = onnxruntime.InferenceSession(f"{{NAME}}/decoder_step.onnx")
PAD, BOS, EOS = {pad}, {bos}, {eos}


def initial_state():
    # Every layer's state, zeros; a KV cache starts with no past positions.
    return {{
        s["name"]: np.zeros([1 if d == "batch" else d for d in s["shape"]], s["dtype"])
        for s in onnx["initial_state"]
    }}


def run_step(token, position, state, **source):
    # One token in, the next token's logits and every layer's new state out.
    feeds = {{"tokens": np.array([token]), "position": np.array([position])}}
    logits, *new = step.run(None, {{**feeds, **source, **state}})
    logits[0, [PAD, BOS]] = -np.inf
    return logits[0], dict(zip(state, new))
"""

_ONNX_DECODE = {
    "encoder_decoder": """\

encoder = onnxruntime.InferenceSession(f"{NAME}/encoder.onnx")
ENCODED = [output.name for output in encoder.get_outputs()]


def translate(source_ids, max_len=200):
    # Greedy decoding of one source's token ids (no bos or eos) to the output's.
    src = np.array([source_ids], dtype=np.int64)
    mask = np.ones_like(src, dtype=bool)
    encoded = dict(zip(ENCODED, encoder.run(None, {"src_tokens": src, "src_mask": mask})))
    del encoded["memory"]  # a step reads each layer's cross-attention keys and values
    token, state, output = BOS, initial_state(), []
    for position in range(max_len):
        logits, state = run_step(token, position, state, memory_mask=mask, **encoded)
        if position == 0:
            logits[EOS] = -np.inf
        token = int(logits.argmax())
        if token == EOS:
            break
        output.append(token)
    return output
""",
    "decoder_lm": """\


def continue_prompt(prompt_ids, new_tokens=200):
    # Greedy continuation of a prompt's token ids; a document starts after an eos.
    tokens, state = [EOS, *prompt_ids], initial_state()
    for position in range(len(tokens) - 1 + new_tokens):
        logits, state = run_step(tokens[position], position, state)
        if position + 1 == len(tokens):
            if position == len(prompt_ids):
                logits[EOS] = -np.inf  # at least one token
            token = int(logits.argmax())
            if token == EOS:
                break
            tokens.append(token)
    return tokens[1 + len(prompt_ids) :]
""",
}


def onnx_decoding_code(name: str, kind: str) -> str:
    """The card's Python for decoding `name`'s step graph in onnxruntime (greedy, as
    seq2seq-generate's greedy search), for an encoder-decoder or a language model."""
    setup = _ONNX_SETUP.format(name=name, pad=PAD_ID, bos=BOS_ID, eos=EOS_ID)
    return setup + _ONNX_DECODE[kind]


def _io(entries: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"`{entry['name']}` {tuple(entry['shape'])}" for entry in entries)


def _onnx_section(onnx: Mapping[str, Any], *, name: str, kind: str) -> list[str]:
    graphs = onnx.get("graphs") or {}
    lines = [
        "## ONNX",
        "",
        f"Exported with {onnx.get('exporter', 'torch.onnx')} and checked in onnxruntime "
        "against PyTorch (outputs within 1e-4):",
        "",
    ]
    lines += [
        f"- `{graph}`: {_io(entry['inputs'])} -> {_io(entry['outputs'])}"
        for graph, entry in graphs.items()
    ]
    lines += [f"- {line}" for line in onnx.get("not_exported") or []]
    if "decoder_step.onnx" in graphs and kind in _ONNX_DECODE:
        lines += [
            "",
            "The step graph decodes one token at a time, every layer's state in and out "
            "(`state.*` -> `next_state.*`; start from the zeros `export.json` lists under "
            "`onnx.initial_state`). Greedy decoding of token ids (the tokenizer is in "
            "`tokenizer/`), with only `numpy` and `onnxruntime`:",
            "",
            "```python",
            onnx_decoding_code(name, kind).rstrip("\n"),
            "```",
        ]
    return [*lines, ""]


def model_card(
    cfg: TrainConfig,
    *,
    name: str,
    kind: str,
    parameters: int,
    provenance: Provenance,
    task_files: Sequence[str],
    onnx: Mapping[str, Any] | None = None,
) -> str:
    """The README.md of an export dir named `name` of a model of `kind` (its task's
    `model_kind`) with `parameters` parameters; `task_files`: what the task saved there;
    `onnx`: export.json's `onnx` entry, when graphs were written."""
    hub = HUB_TASKS[cfg.task]
    if provenance.overrides is None:
        command = [
            "Not recorded (the run dir has no .hydra/overrides.yaml); `config.yaml` holds "
            "every setting the run used."
        ]
    else:
        command = [
            "```bash",
            " ".join(["seq2seq-train", *(shlex.quote(item) for item in provenance.overrides)]),
            "```",
        ]
    averaged = provenance.averaged_from
    source = f"`{provenance.checkpoint}`" + (
        f", step {provenance.step}" if provenance.step >= 0 else ""
    )
    if averaged:
        source += f", the average of steps {list(averaged.get('steps', []))} (seq2seq-average)"
    lines = [
        f"# {name}",
        "",
        f"A model that is {hub.summary}, trained with the `{LIBRARY_NAME}` library "
        f"(task `{cfg.task}`), exported by seq2seq-export from {source}.",
        "",
        "## Data",
        "",
        *_data_section(cfg, provenance.metrics),
        "",
        "## Results",
        "",
        *_results_section(provenance),
        "",
        "## Training",
        "",
        *command,
        "",
        "## Model",
        "",
        *_model_section(cfg, kind, parameters),
        "",
        "## Usage",
        "",
        f"With the `{LIBRARY_NAME}` package installed, and this dir downloaded (`huggingface-cli "
        f"download <user>/{name} --local-dir {name}`):",
        "",
        "```python",
        "import seq2seq",
        "",
        f'run = seq2seq.load_pretrained("{name}")  # run.model (eval mode), run.task, run.config',
        f'print(run.predict(["an input line"]))  # {hub.prediction} per line',
        "```",
        "",
        "```bash",
        f'echo "an input line" | seq2seq-generate checkpoint={name}',
        f"seq2seq-generate checkpoint={name} input=inputs.txt output=predictions.txt",
        f"seq2seq-evaluate --checkpoint {name} --split test    # the run's data, from config.yaml",
        "```",
        "",
        *(_onnx_section(onnx, name=name, kind=kind) if onnx is not None else []),
        "## Files",
        "",
        f"- `{WEIGHTS_NAME}`: the weights (a tied tensor once, its other names in the metadata)",
        f"- `{CONFIG_NAME}`: the resolved training config",
        f"- {', '.join(f'`{file}`' for file in task_files)}: the task's files, as in the run "
        "dir (tokenizers as SentencePiece `.model` with a readable `.vocab`, or `.byte`)",
        f"- `{MANIFEST_NAME}`: what `seq2seq.load_pretrained` and seq2seq-generate read "
        "(format, task state, files"
        + (", the ONNX graphs' inputs and outputs" if onnx else "")
        + ")",
    ]
    return front_matter(cfg, name=name, kind=kind, provenance=provenance) + "\n".join(lines) + "\n"
