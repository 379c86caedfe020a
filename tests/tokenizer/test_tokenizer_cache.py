from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq.tokenizer.cache import cache_key, load_or_train

TEXTS = ["abc", "cab", "bca", "hello"]


def test_cache_key_is_stable_and_depends_on_data_and_settings() -> None:
    key = cache_key(data_fingerprint="f1", settings={"a": 1, "b": [1, 2]})
    assert key == cache_key(data_fingerprint="f1", settings={"b": [1, 2], "a": 1})
    assert len(key) == 64
    assert key != cache_key(data_fingerprint="f2", settings={"a": 1, "b": [1, 2]})
    assert key != cache_key(data_fingerprint="f1", settings={"a": 2, "b": [1, 2]})


class _Texts:
    """A texts_fn that counts its calls."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls = 0

    def __call__(self) -> Iterator[str]:
        self.calls += 1
        yield from self.texts


def _load(cache_dir: Path, texts_fn: object, **kwargs: object) -> tuple[object, bool]:
    settings: dict[str, object] = {
        "model_type": "char",
        "vocab_size": 30,
        "character_coverage": 1.0,
    }
    settings.update(kwargs)
    return load_or_train(cache_dir=cache_dir, key="k" * 64, texts_fn=texts_fn, **settings)  # type: ignore[arg-type]


def test_the_second_call_reuses_without_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = _Texts(TEXTS)
    with caplog.at_level(logging.INFO, logger="seq2seq.tokenizer.cache"):
        first, reused_first = _load(tmp_path, texts)
        second, reused_second = _load(tmp_path, texts)
    assert (reused_first, reused_second) == (False, True)
    assert texts.calls == 1
    assert first.fingerprint == second.fingerprint  # type: ignore[attr-defined]
    assert "trained tokenizer" in caplog.text
    assert f"reusing cached tokenizer {tmp_path / ('k' * 64) / 'spm.model'}" in caplog.text


def _failing() -> Iterator[str]:
    yield "abc"
    raise OSError("disk went away mid-read")


@pytest.mark.parametrize(
    ("texts_fn", "kwargs", "error"),
    [
        (_failing, {}, "disk went away"),
        (_Texts(TEXTS), {"model_type": "unigram", "vocab_size": 6}, "tokenizer.vocab_size=6"),
    ],
    ids=["texts-fail", "training-fails"],
)
def test_a_failed_training_leaves_nothing_behind(
    tmp_path: Path, texts_fn: object, kwargs: dict[str, object], error: str
) -> None:
    with pytest.raises(Exception, match=error):
        _load(tmp_path, texts_fn, **kwargs)
    assert list(tmp_path.iterdir()) == []
    # And the next run trains instead of reusing a broken entry.
    assert _load(tmp_path, _Texts(TEXTS))[1] is False


def test_an_unreadable_entry_says_to_delete_it(tmp_path: Path) -> None:
    entry = tmp_path / ("k" * 64)
    entry.mkdir()
    (entry / "spm.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"unreadable.*delete"):
        _load(tmp_path, _Texts(TEXTS))
