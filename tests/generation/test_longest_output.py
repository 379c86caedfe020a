"""The longest output decoding allows is the longest target training keeps.

Training keeps targets of up to `model.max_len - 1` tokens (the decoder reads bos plus the
target); `decoding_settings` must let decoding produce that many, from any source (the
default has no limit relative to the source, which cut a transliteration task's long
targets), and a model with learned positions (which fail past their table) must decode
them without running out.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from seq2seq.config.schema import TrainConfig
from seq2seq.generation import generate
from seq2seq.tasks.seq2seq import decoding_settings, length_limits
from seq2seq.tokenizer.sentencepiece import BOS_ID, EOS_ID, PAD_ID
from support.tiny_models import tiny_config, tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

MAX_LEN = 16
VOCAB = 12
# Far more than the model allows: the model's limit must win.
RELATIVE = {"max_len_a": 0, "max_len_b": 100}


@pytest.mark.parametrize("limits", [{}, RELATIVE], ids=["default", "relative"])
@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_decoding_reaches_the_longest_kept_target(strategy: str, limits: dict[str, int]) -> None:
    cfg: TrainConfig = OmegaConf.to_object(  # type: ignore[assignment]
        OmegaConf.merge(
            OmegaConf.structured(TrainConfig),
            {
                "model": {"max_len": MAX_LEN, "position": "learned"},
                # min_len: eos is forbidden until the limit, so every output reaches it.
                "generation": {"strategy": strategy, "min_len": MAX_LEN - 1, **limits},
            },
        )
    )
    _, longest_target = length_limits(cfg)
    settings = decoding_settings(cfg, cfg.generation)
    assert settings.max_len == longest_target == MAX_LEN - 1

    model_cfg = tiny_config(
        d_model=16, heads=2, d_ff=32, position="learned", max_len=MAX_LEN, layers=1
    )
    torch.manual_seed(0)
    model = tiny_model(model_cfg, seed=0, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, pad_id=PAD_ID)
    model.eval()
    src = torch.tensor([[5]])  # one token: floor(1.5 * 1 + 10), the old default, is 11
    hypotheses = generate(
        model,  # type: ignore[arg-type]
        src,
        torch.ones_like(src, dtype=torch.bool),
        settings,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
    )
    assert len(hypotheses[0][0].tokens) == MAX_LEN - 1
    assert hypotheses[0][0].at_limit
