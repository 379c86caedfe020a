"""Decoding user text files, with an error that says which one and where it went wrong."""

from __future__ import annotations


def not_utf8(what: str, offset: int) -> ValueError:
    """The error for `what` (an option and its file), whose first bad byte is at `offset`."""
    return ValueError(
        f"{what} is not valid UTF-8 (first bad byte at offset {offset}); "
        "re-encode it, e.g. `iconv -f latin1 -t utf-8 in > out`"
    )


_BOM = b"\xef\xbb\xbf"


def decode_utf8(data: bytes, *, what: str) -> str:
    """`data` as UTF-8 text, without the byte-order mark some editors put first (it
    would stick to the first line); otherwise the `not_utf8` error for `what`."""
    skipped = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise not_utf8(what, skipped + error.start) from error
