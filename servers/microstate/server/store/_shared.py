"""Private helpers shared by the store backends (no backend's driver is imported here)."""

from __future__ import annotations

import asyncio
import importlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from microstate.server.store.base import StoreUnavailable

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


def backend_class(backends: Mapping[str, str], url: str, role: str, example: str) -> Any:
    """The class `backends` names ("module:class") for the scheme of `url`, its module imported only now.

    An unknown scheme is a ValueError naming the `role` ("store", "blob store"), the schemes there are and an
    `example` URL.
    """
    scheme = urlsplit(url).scheme.lower()
    try:
        module_name, class_name = backends[scheme].split(":")
    except KeyError:
        raise ValueError(
            # The scheme, not the URL: the URL may hold a password.
            f"unsupported {role} URL (scheme {scheme!r}): the scheme must be one of {', '.join(backends)}"
            f" (for example {example})"
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


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


def backoff(attempt: int, *, base: float = 0.005, cap: float = 1.0) -> float:
    """Exponential backoff with full jitter, so racing writers spread out instead of colliding again."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Outage:
    """How long a watch has been failing, and whether it may keep retrying."""

    def __init__(self, budget: float) -> None:
        self._budget = budget
        self._since: float | None = None
        self._failures = 0

    def reset(self) -> None:
        self._since, self._failures = None, 0

    async def retry_or_raise(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        self._since = self._since or now
        if now - self._since > self._budget:
            raise exc
        self._failures += 1
        await asyncio.sleep(backoff(self._failures, base=0.05))  # backoff before reconnecting


async def set_up(store: S, setup: Awaitable[object], *, name: str | None = None) -> S:
    """`store` once `setup` has completed; if it fails, `store` is closed and the error raised, a
    StoreUnavailable saying which store could not be opened when `name` is given ("SQLite store <path>")."""
    try:
        await setup
    except StoreUnavailable as exc:
        await store.close()
        if name is None:
            raise
        raise type(exc)(f"cannot open {name}: {exc}") from exc
    except BaseException:
        await store.close()
        raise
    return store


def require_positive(**settings: float) -> None:
    """ValueError naming the first of `settings` that is not above 0 (a count of nothing, an interval that
    would spin, a timeout that fails every call)."""
    for name, value in settings.items():
        if not value > 0:
            raise ValueError(f"{name} must be more than 0, not {value!r}")


def check_ttl(ttl: float | None) -> None:
    """ValueError unless `ttl` is None (no expiry) or a finite number of seconds above 0."""
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")


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


def end_if_cancelled() -> None:
    """Raise CancelledError if the current task was cancelled but the cancellation got lost on the way.

    Python 3.11's asyncio.wait_for swallows a cancellation that arrives as the call it waits for completes,
    and redis-py and PyMongo wrap every send in it: a watch cancelled at that moment would go on following
    the store for good. Watch loops call this on every turn, so they end at the next one instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
