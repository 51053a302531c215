"""Private helpers shared by the store backends (no backend's driver is imported here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from microstate.server.store.base import StoreUnavailable

T = TypeVar("T")


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` (None: no upper bound).

    SQLite compares TEXT, and MongoDB strings without a collation, as UTF-8 bytes, which is code-point order,
    the same as Python's `str` order.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored as UTF-8, so no key holds one
                code = 0xE000
            return "".join(chars) + chr(code)
    return None


def require_positive(**settings: float) -> None:
    """ValueError naming the first of `settings` that is not above 0 (a count of nothing, an interval that
    would spin, a timeout that fails every call)."""
    for name, value in settings.items():
        if not value > 0:
            raise ValueError(f"{name} must be more than 0, not {value!r}")


async def guard(call: Awaitable[T], classify: Callable[[Exception], StoreUnavailable | None]) -> T:
    """Await a driver call, turning the errors `classify` maps to StoreUnavailable into that (chained).

    `classify` returns None for an error that is not an availability problem: that one propagates as it is.
    """
    try:
        return await call
    except Exception as exc:
        unavailable = classify(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
