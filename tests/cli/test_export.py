"""seq2seq-export on tiny trained runs: the export holds best.pt's weights and decodes as
the run does (seq2seq-generate and `seq2seq.load_pretrained`, from any working dir), its
model card, every task's state carried in plain files, and the refusals, none of which
leaves anything half-written.

One toy_reverse run is trained per module (about 10 s); every task gets a 4-step run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open

import seq2seq
from seq2seq.cli.average import main as average_main
from seq2seq.cli.export import main
from seq2seq.jobs import export as export_job
from seq2seq.jobs.export_files import MANIFEST_NAME, WEIGHTS_NAME
from seq2seq.jobs.generate import generate_from_config
from seq2seq.jobs.model_card import HUB_TASKS
from seq2seq.jobs.trained_run import load_run
from seq2seq.tasks import TASKS
from seq2seq.training.checkpoint import load_checkpoint

# Tiny models on a loaded two-core machine: a second intra-op thread only waits.
pytestmark = pytest.mark.usefixtures("single_thread")

TrainRun = Callable[..., Path]
Compose = Callable[..., Any]

# Trained enough for outputs to differ from source to source; checkpoints at steps 50 and
# 100 are both kept, so best.pt can be told from the newest step.
TRAIN_OVERRIDES = (
    "experiment=toy_reverse",
    "model=tiny",
    "trainer.max_steps=100",
    "trainer.eval_every=50",
    "trainer.log_every=100",
    "trainer.keep_last=2",
    "trainer.progress=log",
    "schedule.warmup_steps=5",
    "optim.lr=3e-3",
    "data.train_size=200",
    "data.validation_size=16",
    "data.test_size=16",
    "data.min_len=3",
    "data.max_len=8",
    "data.max_tokens=256",
)
METRICS = ["exact_match", "cer"]  # toy_reverse's trainer.metrics
SOURCES = ["abc", "jihgfedc", "bead", "cafe", "ggghhhiii", "d"]
# On top of the 4-step tiny preset, a recipe and inputs per task.
TASK_RUNS = {
    "seq2seq": (("experiment=toy_reverse",), ["abc", "cafe"]),
    "classification": (("experiment=classify_brackets",), ["(()[])", "([)]"]),
    "language_modeling": (
        ("experiment=lm_dyck", "data.block_size=16", "trainer.sampled_documents=4"),
        ["([", ""],
    ),
}


@pytest.fixture(scope="module")
def run_dir(train_run: TrainRun) -> Path:
    return train_run("export", *TRAIN_OVERRIDES, tiny=False)


def export(source: Path, out: Path) -> Path:
    assert main([str(source), str(out)]) == 0
    return out


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def generate(checkpoint: Path, compose_generate: Compose, *overrides: str) -> list[str]:
    return generate_from_config(
        compose_generate(f"checkpoint={checkpoint}", "device=cpu", *overrides)
    )


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert isinstance(meta, dict)
    return meta


def leftovers(directory: Path) -> list[str]:
    """Hidden temporary dirs of an export beside its destination."""
    return sorted(path.name for path in directory.iterdir() if ".export-" in path.name)


def test_the_export_holds_best_pt_and_decodes_the_test_split_as_the_run_does(
    run_dir: Path, tmp_path: Path, compose_generate: Compose
) -> None:
    out = export(run_dir, tmp_path / "reverse")
    best = state_dict(run_dir / "checkpoints" / "best.pt")
    run = seq2seq.load_pretrained(out)
    assert not run.model.training
    assert_same_weights(run.model, best)
    # The tied output projection is stored once, its name kept in the metadata.
    with safe_open(str(out / WEIGHTS_NAME), framework="pt") as weights:
        stored, metadata = set(weights.keys()), weights.metadata()
    assert "decoder.output.weight" not in stored
    assert metadata["decoder.output.weight"] == "decoder.embedding.weight"
    assert stored | {"decoder.output.weight"} == best.keys()

    from_run = generate(run_dir, compose_generate, "split=test", "generation=greedy")
    from_export = generate(out, compose_generate, "split=test", "generation=greedy")
    assert from_export == from_run
    assert from_run == (run_dir / "predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(set(from_run)) > 3, from_run  # trained enough to tell sources apart
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert sorted(manifest["files"]) == sorted(
        path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()
    )
    assert leftovers(tmp_path) == []


def test_a_run_dir_exports_its_best_pt_not_its_newest_step(run_dir: Path, tmp_path: Path) -> None:
    """best.pt made a copy of the older step checkpoint: the export must follow it."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    older, newest = sorted((copy / "checkpoints").glob("step_*.pt"))
    name = "decoder.output.weight"
    assert not torch.equal(state_dict(older)[name], state_dict(newest)[name])
    shutil.copyfile(older, copy / "checkpoints" / "best.pt")
    out = export(copy, tmp_path / "export")
    assert_same_weights(seq2seq.load_pretrained(out).model, state_dict(older))


def test_figures_of_another_step_stay_off_the_card(run_dir: Path, tmp_path: Path) -> None:
    """A best.pt of another step than metrics.json's best (a run resumed after it wrote
    metrics.json): the figures are not those of the exported weights."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    best_step = json.loads((copy / "metrics.json").read_text())["best"]["step"]
    other = next(
        path
        for path in sorted((copy / "checkpoints").glob("step_*.pt"))
        if int(path.stem.removeprefix("step_")) != best_step
    )
    shutil.copyfile(other, copy / "checkpoints" / "best.pt")
    card = (export(copy, tmp_path / "export") / "README.md").read_text(encoding="utf-8")
    assert "model-index" not in front_matter(card)
    assert (
        f"No figures: the run's metrics.json measures the best checkpoint of step {best_step}"
        in card
    )


def test_the_card_names_the_task_the_data_the_figures_the_command_and_the_size(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / ".hydra").mkdir(exist_ok=True)
    (copy / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([*TRAIN_OVERRIDES, "tokenizer.cache_dir=my cache"])
    )
    out = export(copy, tmp_path / "reverse")
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert meta["library_name"] == "seq2seq"
    assert meta["pipeline_tag"] == "text2text-generation"
    assert {"seq2seq", "encoder-decoder", "softmax"} <= set(meta["tags"])
    (result,) = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "reverse"
    assert result["task"] == {"type": "text2text-generation", "name": "seq2seq"}
    assert result["dataset"] == {"name": "reverse", "type": "reverse", "split": "test"}
    test = json.loads((copy / "metrics.json").read_text())["test"]
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [
        (name, round(test[name], 4)) for name in METRICS
    ]
    model = seq2seq.load_pretrained(out).model
    parameters = sum(p.numel() for p in model.parameters())
    assert f"{parameters:,} parameters" in card
    assert "task `seq2seq`" in card and "The built-in dataset `reverse`" in card
    assert "seq2seq-train experiment=toy_reverse model=tiny " in card
    assert "'tokenizer.cache_dir=my cache'" in card  # quoted as a shell needs it
    assert 'seq2seq.load_pretrained("reverse")' in card
    assert "seq2seq-generate checkpoint=reverse" in card


def test_an_averaged_checkpoint_exports_with_its_own_weights(run_dir: Path, tmp_path: Path) -> None:
    averaged = tmp_path / "avg.pt"
    steps = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert average_main([*map(str, steps), "--output", str(averaged)]) == 0
    out = export(averaged, tmp_path / "averaged")
    # The model that decodes the checkpoint (seq2seq-generate's), not its raw entries: the
    # average holds the tied embedding twice, averaged under one name only.
    decoding = load_run(averaged, torch.device("cpu")).model.state_dict()
    assert_same_weights(seq2seq.load_pretrained(out).model, decoding)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "the average of steps [50, 100]" in card
    assert "model-index" not in front_matter(card)
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["checkpoint"]["averaged_from"]["steps"] == [50, 100]


def test_load_pretrained_from_another_working_dir(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compose_generate: Compose
) -> None:
    out = export(run_dir, tmp_path / "exports" / "reverse")
    sources = tmp_path / "sources.txt"
    sources.write_text("".join(f"{line}\n" for line in SOURCES), encoding="utf-8")
    expected = generate(run_dir, compose_generate, f"input={sources}", "output=-")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert seq2seq.load_pretrained(out).predict(SOURCES) == expected
    monkeypatch.chdir(out.parent)
    assert seq2seq.load_pretrained("reverse", device="cpu").predict(SOURCES) == expected
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_s_state_round_trips_through_plain_files(
    task: str, train_run: TrainRun, tmp_path: Path
) -> None:
    recipe, lines = TASK_RUNS[task]
    run_dir = train_run(f"export-{task}", *recipe)
    out = export(run_dir, tmp_path / task)
    best = run_dir / "checkpoints" / "best.pt"
    exported = seq2seq.load_pretrained(out)
    original = load_run(best, torch.device("cpu"))
    assert_same_weights(exported.model, state_dict(best))
    mine, theirs = exported.task.state(), original.task.state()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        if isinstance(value, dict):  # the tokenizers, as uint8 tensors
            assert value.keys() == mine[key].keys()
            assert all(torch.equal(mine[key][side], value[side]) for side in value)
        else:
            assert mine[key] == value
    assert exported.predict(lines) == original.predict(lines)
    # Nothing pickled: every file is the weights, YAML, JSON, text or a tokenizer's format.
    suffixes = {path.suffix for path in out.rglob("*") if path.is_file()}
    assert suffixes <= {
        ".safetensors",
        ".yaml",
        ".json",
        ".md",
        ".model",
        ".vocab",
        ".byte",
        ".txt",
    }
    assert (
        front_matter((out / "README.md").read_text())["pipeline_tag"]
        == HUB_TASKS[task].pipeline_tag
    )


def test_every_task_has_its_hub_task() -> None:
    assert set(HUB_TASKS) == set(TASKS)


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("seq2seq-export: error: ")
    return lines[-1].removeprefix("seq2seq-export: error: ")


def test_refusals_leave_nothing_behind(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert "does not exist" in error_line(capsys, str(tmp_path / "nowhere"), str(out))
    assert "without checkpoints/best.pt" in error_line(capsys, str(tmp_path), str(out))
    assert not out.exists()

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    message = error_line(capsys, str(run_dir), str(taken))
    assert f"{taken} exists and is not empty (notes.txt)" in message
    assert [path.name for path in taken.iterdir()] == ["notes.txt"]

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "exists and is not a directory" in error_line(capsys, str(run_dir), str(a_file))
    # The run dir itself is not an empty dir either.
    assert "exists and is not empty" in error_line(capsys, str(run_dir), str(run_dir))

    export(run_dir, out)
    assert "is already an export dir" in error_line(capsys, str(out), str(tmp_path / "again"))
    assert leftovers(tmp_path) == []


def test_an_earlier_export_is_replaced_unless_it_holds_other_files(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = export(run_dir, tmp_path / "out")
    older = sorted((run_dir / "checkpoints").glob("step_*.pt"))[0]
    export(older, out)  # replaced: now the older step's weights
    assert_same_weights(seq2seq.load_pretrained(out).model, state_dict(older))
    (out / ".git").mkdir()  # a Hub clone: replacing it would lose its history
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    message = error_line(capsys, str(run_dir), str(out))
    assert "exists and is an earlier export with other files (.git/HEAD)" in message
    assert (out / ".git" / "HEAD").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    export(run_dir, empty)
    assert (empty / WEIGHTS_NAME).is_file()
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_half_export_and_keeps_an_earlier_one(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device", "model.safetensors")

    earlier = export(run_dir, tmp_path / "earlier")
    files = sorted(path.relative_to(earlier) for path in earlier.rglob("*"))
    monkeypatch.setattr(export_job, "save_model", full_disk)
    assert "No space left on device" in error_line(capsys, str(run_dir), str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    assert "No space left on device" in error_line(capsys, str(run_dir), str(earlier))
    assert sorted(path.relative_to(earlier) for path in earlier.rglob("*")) == files
    assert leftovers(tmp_path) == []


def test_an_export_with_a_missing_or_changed_tokenizer_is_refused(
    run_dir: Path, tmp_path: Path, compose_generate: Compose
) -> None:
    out = export(run_dir, tmp_path / "out")
    (out / "tokenizer" / "target.model").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"lacks tokenizer/target\.model, which its export\.json lists"
    ):
        generate(out, compose_generate, "split=test")
    shutil.copyfile(out / "tokenizer" / "source.vocab", out / "tokenizer" / "target.model")
    with pytest.raises(
        ValueError, match=r"target\.model is not the target tokenizer that was exported"
    ):
        seq2seq.load_pretrained(out)


def test_module_entry_point(run_dir: Path, tmp_path: Path) -> None:
    """`python -m seq2seq.cli.export` prints the export dir; a mistake is one line, exit 2."""
    command = [sys.executable, "-m", "seq2seq.cli.export"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    done = subprocess.run(
        [*command, str(run_dir), str(out)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{out}\n"
    failed = subprocess.run(
        [*command, str(tmp_path / "nowhere"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        f"seq2seq-export: error: {tmp_path / 'nowhere'} does not exist; give a run dir of "
        "seq2seq-train or a checkpoint .pt file"
    )
