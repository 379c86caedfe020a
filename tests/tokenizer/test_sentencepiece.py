from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

from seq2seq.tokenizer.sentencepiece import (
    BOS_ID,
    EOS_ID,
    MODEL_TYPES,
    PAD_ID,
    UNK_ID,
    train_tokenizer,
)
from seq2seq.tokenizer.sentencepiece import (
    SentencePieceTokenizer as Tokenizer,
)

TEXTS = ["the cat sat", "on the mat", "abcd", "dcba", "hello world", "123+45", "168"] * 4


def _train(tmp_path: Path, model_type: str, **kwargs: object) -> Tokenizer:
    settings: dict[str, object] = {"vocab_size": 60, "output_dir": tmp_path, "prefix": "spm"}
    settings.update(kwargs)
    return train_tokenizer(TEXTS, model_type=model_type, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_round_trip_and_special_ids(tmp_path: Path, model_type: str) -> None:
    tok = _train(tmp_path, model_type)
    for text in set(TEXTS):
        ids = tok.encode(text)
        assert ids and min(ids) > EOS_ID, "no specials inside an encoded text"
        assert tok.decode(ids) == text
    assert tok.encode_batch(TEXTS[:3]) == [tok.encode(t) for t in TEXTS[:3]]
    assert 4 < tok.vocab_size <= 60
    assert (tmp_path / "spm.model").is_file()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_normalize_is_what_decoding_the_encoding_gives(tmp_path: Path, model_type: str) -> None:
    """Spaces anywhere and in runs, tabs, an ideographic space and NFKC-folded letters
    (the ligature "\ufb01" is "fi", fullwidth "\uff41" is "a")."""
    tok = train_tokenizer(
        [*TEXTS, "fine day", "a b c"],
        model_type=model_type,  # type: ignore[arg-type]
        vocab_size=60,
        output_dir=tmp_path,
        prefix="spm",
    )
    rng = random.Random(0)
    pieces = ["a", "b", "c", "the", "\ufb01", "\uff41", " ", "  ", "\t", "\u3000"]
    compared = 0
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        ids = tok.encode(text)
        if UNK_ID not in ids:
            assert tok.normalize(text) == tok.decode(ids), repr(text)
            compared += 1
    assert compared >= 100
    assert tok.normalize(" \ufb01ne  d\uff41y ") == "fine day"


def test_decode_stops_at_eos_and_skips_pad_and_bos(tmp_path: Path) -> None:
    tok = _train(tmp_path, "char")
    ids = tok.encode("abcd")
    assert tok.decode([BOS_ID, *ids, EOS_ID, *tok.encode("dcba"), PAD_ID]) == "abcd"
    # ids[0] is the word-start piece "▁" (SentencePiece's dummy prefix).
    assert tok.decode([BOS_ID, *ids[:3], PAD_ID, PAD_ID]) == "ab"
    assert tok.decode([]) == ""


def test_unknown_text_maps_to_unk(tmp_path: Path) -> None:
    tok = _train(tmp_path, "char")
    assert UNK_ID in tok.encode("zzz")


def test_save_load_and_pickle_keep_the_model(tmp_path: Path) -> None:
    tok = _train(tmp_path / "train", "bpe")
    path = tok.save(tmp_path / "run", "source")
    assert path == tmp_path / "run" / "source.model"
    assert (tmp_path / "run" / "source.vocab").read_text().startswith("<pad>\t")
    for copy in (Tokenizer.load(path), pickle.loads(pickle.dumps(tok))):
        assert copy.fingerprint == tok.fingerprint
        assert copy.encode("the cat") == tok.encode("the cat")


def test_training_is_quiet_and_deterministic(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    first = _train(tmp_path / "a", "unigram")
    second = _train(tmp_path / "b", "unigram")
    assert first.fingerprint == second.fingerprint
    out, err = capfd.readouterr()
    assert out == err == ""


def test_an_unknown_model_type_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"tokenizer.model_type='wordpiece'.*\['unigram', 'bpe', 'char', 'word'\]"
    ):
        _train(tmp_path, "wordpiece")


@pytest.mark.parametrize("model_type", ["unigram", "char"])
def test_a_vocabulary_too_small_for_the_characters_names_the_field(
    tmp_path: Path, model_type: str
) -> None:
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=10 "):
        _train(tmp_path, model_type, vocab_size=10)


def test_no_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no training text"):
        train_tokenizer(["", " "], model_type="bpe", vocab_size=20, output_dir=tmp_path, prefix="x")


def test_a_foreign_model_with_other_special_ids_is_refused(tmp_path: Path) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(TEXTS),
        model_prefix=str(tmp_path / "foreign"),
        vocab_size=30,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match=r"special ids"):
        Tokenizer.load(tmp_path / "foreign.model")


def test_a_word_vocabulary_below_the_distinct_words_warns_with_what_becomes_unk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The cap keeps the most frequent words and reads the rest as unk: taken, and said."""
    texts = ["common common common rare1", "common rare2 rare3"] * 2
    with caplog.at_level("WARNING", logger="seq2seq.tokenizer"):
        tokenizer = train_tokenizer(
            texts, model_type="word", vocab_size=6, output_dir=tmp_path, prefix="w"
        )
    kept = [
        word
        for word in ("common", "rare1", "rare2", "rare3")
        if UNK_ID not in tokenizer.encode(word)
    ]
    lost = 4 - len(kept)
    assert lost > 0  # the premise: 4 specials leave room for 2 of the 4 words
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"tokenizer.vocab_size=6 keeps {len(kept)} of the 4 distinct words of the training "
        f"text; the other {lost} ("
    )
    assert f"raise tokenizer.vocab_size to at least {6 + lost} to keep them all" in (
        record.getMessage()
    )


def test_a_word_vocabulary_that_holds_every_word_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="seq2seq.tokenizer"):
        _train(tmp_path, "word")
    assert not caplog.records
