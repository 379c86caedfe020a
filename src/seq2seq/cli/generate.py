"""`seq2seq-generate`: a trained run's predictions, one per input line.

    seq2seq-generate checkpoint=outputs/2024-05-01/12-00-00 input=sources.txt output=hyps.txt
    seq2seq-generate checkpoint=run/checkpoints/step_00001500.pt input=- < sources.txt
    seq2seq-generate checkpoint=<run dir> split=test generation=beam generation.beam_size=8 \\
        generation.nbest=4 output=test.hyp nbest_output=test.nbest

`checkpoint` is a `.pt` file or a run dir (then its `checkpoints/best.pt`). The model,
its config and its tokenizers come from the checkpoint alone. A list,
`checkpoint=[run1,run2]`, decodes the runs as one ensemble (the mean of their
probabilities at every step; they must share their tokenizers), with the first run's
settings. Inputs are one per line of
`input` (`-` reads stdin; a FIFO or `<(...)` works too), or a split of the run's own
data (`split=test`), prepared exactly as training evaluated it.

Decoding uses the run's own `generation` settings, so `split=test` gives the run's
`predictions.txt` line for line. What is typed applies on top: `generation=<group>`
replaces them with that group's settings (and any typed `generation.<key>=`), and
`generation.<key>=value` alone changes only those keys of the run's.

Outputs are checked (writable, not the input or the checkpoint, not one another) before
the model is loaded. In a multirun (`-m`), a relative output path is written inside
each job's own dir (`hydra.sweep.dir/<job number>/`), so jobs never share a file.
`python -m seq2seq.cli.generate ...` is the same program; the job itself is
`seq2seq.jobs.generate.generate_from_config`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.cli.errors import run_cli, usage_errors
from seq2seq.config.command_line import typed_overrides
from seq2seq.config.store import CONFIG_PATH, register_configs
from seq2seq.jobs.generate import generate_from_config

register_configs()


@hydra.main(config_path=CONFIG_PATH, config_name="generate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    with usage_errors("seq2seq-generate"):
        generate_from_config(
            cfg,
            command_line=typed_overrides(),
            job_dir=Path(hydra_cfg.runtime.output_dir) if multirun else None,
        )


def main() -> None:
    """`seq2seq-generate`: bad input is one `error:` line and exit status 2."""
    run_cli("seq2seq-generate", _hydra_main)


if __name__ == "__main__":
    main()
