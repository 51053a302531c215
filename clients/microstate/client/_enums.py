"""Enums of a contract's numbers, as the clients hand them to callers."""

from __future__ import annotations

import enum
from typing import Self


class ContractEnum(enum.IntEnum):
    """A contract enum: each member's value is the contract's number, so it equals it; a member prints as
    its name; and a number this client does not know (sent by a newer server) reads as the member numbered
    0, UNSPECIFIED (AIP-126)."""

    def __str__(self) -> str:
        return self.name

    @classmethod
    def of(cls, number: int) -> Self:
        """The member numbered `number`, or the one numbered 0 for a number this client does not know."""
        try:
            return cls(number)
        except ValueError:
            return cls(0)
