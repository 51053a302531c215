"""Waiting on conditions and watches with a deadline: the suite never sleeps as a way to synchronise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from microstate.server.store import Change, Store

DEADLINE = 5.0
"""Seconds any awaited condition may take before the test fails (generous: CI machines are slow)."""
_POLL = 0.02
T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, what: str, within: float = DEADLINE
) -> None:
    """Return as soon as `condition()` holds; fail the test if it does not within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting until {what}")
        await asyncio.sleep(_POLL)  # the polling interval of this wait, not a synchronisation


@asynccontextmanager
async def watching(
    store: Store, prefix: str = "", *, after: str | None
) -> AsyncIterator[AsyncIterator[Change]]:
    """`store.watch(...)`, closed on exit (the protocol types it as a plain AsyncIterator)."""
    changes = store.watch(prefix, after=after)
    try:
        yield changes
    finally:
        aclose = getattr(changes, "aclose", None)
        if aclose is not None:
            await aclose()


async def take(items: AsyncIterator[T], count: int, *, within: float = DEADLINE) -> list[T]:
    """The next `count` items of a watch (or a log's follow), failing the test if they do not all arrive
    within `within`."""
    taken: list[T] = []
    async with asyncio.timeout(within):
        while len(taken) < count:
            taken.append(await anext(items))
    return taken


async def first_change(store: Store, prefix: str = "", *, after: str | None) -> Change:
    """The first change a new watch yields (or the error it raises), closing the watch afterwards."""
    async with watching(store, prefix, after=after) as changes:
        (change,) = await take(changes, 1)
    return change
