"""The byte tokenizer: any UTF-8 text round-trips exactly, ids are the bytes past the
specials, and a checkpoint's stored copy comes back as a byte tokenizer."""

from __future__ import annotations

import pytest

from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, ByteTokenizer
from seq2seq.tokenizer.stored import tokenizer_from_proto

TEXTS = ["", "hello", "  two  spaces\tand a tab\n", "naïve café", "漢字かな", "emoji 🙂 ok", "a\\b"]


@pytest.mark.parametrize("text", TEXTS)
def test_any_text_round_trips_exactly(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == tokenizer.normalize(text) == text


def test_ids_are_bytes_after_the_specials_and_decoding_stops_at_eos() -> None:
    tokenizer = ByteTokenizer()
    assert tokenizer.vocab_size == 260
    assert tokenizer.encode("A") == [ord("A") + 4]
    assert tokenizer.encode("\x00") == [4]
    assert tokenizer.encode("\U0010ffff")[0] == 0xF4 + 4  # the largest UTF-8 lead byte
    assert all(4 <= i < 260 for i in tokenizer.encode("ÿ漢🙂"))
    assert tokenizer.decode([BOS_ID, *tokenizer.encode("ab"), PAD_ID, EOS_ID, 70]) == "ab"


def test_a_character_cut_in_the_middle_decodes_with_a_replacement() -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode("é")
    assert tokenizer.decode(ids[:1]) == "\ufffd"


def test_the_stored_proto_restores_a_byte_tokenizer() -> None:
    restored = tokenizer_from_proto(ByteTokenizer().model_proto)
    assert isinstance(restored, ByteTokenizer)
    assert restored.fingerprint == ByteTokenizer().fingerprint
