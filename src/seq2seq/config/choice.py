"""`Choice`: the base of every named choice in the schema (attention kind, norm, ...).

A choice field typed by an Enum is checked by Hydra at composition: an unknown value fails
there, naming the key and the valid values. Members are strings (`Norm.rezero == "rezero"`)
and print as their value, so code and messages read them like the plain names they are.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """An Enum whose members are their names as strings (name and value are the same)."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def names(cls) -> list[str]:
        return [member.value for member in cls]
