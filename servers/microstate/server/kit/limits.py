"""Documented limits that slices check the same way: string maps, page sizes, and ids of a given form.

Breaking one is INVALID_ARGUMENT with a BadRequest field violation naming the request field, checked
before any store access. Each slice keeps its own numbers and patterns (they are part of its contract).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from microstate.server.errors import InvalidArgument


def shown(value: str) -> str:
    """`value` quoted for an error message, cut to 40 characters."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def check_form(
    value: str, pattern: re.Pattern[str], field: str, rule: str, *, reason: str | None = None
) -> None:
    """`value` must match `pattern` whole; else INVALID_ARGUMENT saying `rule`."""
    if not pattern.fullmatch(value):
        raise InvalidArgument(field, f"{shown(value)} is not valid: {rule}", reason=reason)


@dataclass(frozen=True, slots=True)
class MapLimits:
    """The limits of a map<string, string> field (attributes, labels)."""

    max_entries: int
    max_key: int
    max_value: int

    def check(self, entries: Mapping[str, str], field: str) -> None:
        if len(entries) > self.max_entries:
            raise InvalidArgument(
                field, f"{len(entries)} entries; at most {self.max_entries}", reason="LIMIT_EXCEEDED"
            )
        self.check_entries(entries, field)

    def check_entries(self, entries: Mapping[str, str], field: str) -> None:
        """Each key's and value's length (for a slice that counts the entries its own way)."""
        for key, value in entries.items():
            if not 0 < len(key) <= self.max_key:
                raise InvalidArgument(f"{field}[{shown(key)}]", f"keys are 1 to {self.max_key} characters")
            if len(value) > self.max_value:
                raise InvalidArgument(
                    f"{field}[{shown(key)}]",
                    f"values are at most {self.max_value} characters",
                    reason="LIMIT_EXCEEDED",
                )


def page_size_of(requested: int, *, default: int, maximum: int) -> int:
    """AIP-158: 0 means the default, more than the maximum is coerced to it, negative is refused."""
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or default, maximum)
