"""Decoding user text files, with an error that says which one and where it went wrong."""

from __future__ import annotations


def decode_utf8(data: bytes, *, what: str) -> str:
    """`data` as UTF-8 text; otherwise a ValueError naming `what` (the option and file)
    and the offset of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} is not valid UTF-8 (first bad byte at offset {error.start}); "
            "re-encode it, e.g. `iconv -f latin1 -t utf-8 in > out`"
        ) from error
