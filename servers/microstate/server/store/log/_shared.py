"""What the log backends share: argument checks, cursors, paging and the follow loop (no driver here).

Each backend subclasses `LogReading` and provides two things: `_entries_after` (one consistent read of the
bookkeeping and the entries after a position) and `_waiting` (what a follower waits on for new entries: an
event and a poll, a change stream, a blocking read on a connection of its own). `LogReading` builds the
protocol's `read` and `follow` from them, so cursor checks, paging, outage handling and cleanup are the
same on every backend.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

from microstate.server.store._shared import Outage, end_if_cancelled
from microstate.server.store.base import CursorExpired, InvalidCursor, StoreUnavailable
from microstate.server.store.log.base import MAX_DEDUPE_KEY, LogEntry, LogPage

TRIM_BATCH: Final = 10_000
"""Entries one trim step drops at most, so a large trim never holds the store for long."""
FOLLOW_BATCH: Final = 256
"""Entries a follower reads at once."""
DEFAULT_FOLLOW_OUTAGE_BUDGET: Final = 30.0
"""Seconds a follower keeps retrying through an outage before it raises StoreUnavailable."""

_CURSOR = re.compile(r"0|[1-9][0-9]{0,18}")


# -- argument checks ----------------------------------------------------------------------------------------


def check_dedupe_window(seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"dedupe_window must be a positive number of seconds, not {seconds!r}")


def check_append(entries: Sequence[bytes], dedupe_key: str | None) -> list[bytes]:
    """The entries as a list of bytes; ValueError for none, or for a dedupe key that is empty or too long."""
    if isinstance(entries, bytes | bytearray | memoryview):
        raise TypeError("append takes a sequence of entries, not one bytes object")
    checked = [bytes(entry) for entry in entries]
    if not checked:
        raise ValueError("append needs at least one entry")
    if dedupe_key is not None and not 0 < len(dedupe_key) <= MAX_DEDUPE_KEY:
        raise ValueError(f"a dedupe_key has 1 to {MAX_DEDUPE_KEY} characters, not {len(dedupe_key)}")
    return checked


# -- cursors ------------------------------------------------------------------------------------------------


def parse_cursor(cursor: str | None) -> int | None:
    """The position a cursor names (None stays None); InvalidCursor if it is not one of ours."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidCursor(f"not a log cursor: {cursor!r}")
    return int(cursor)


def start_position(after: int | None, *, head: int, trimmed_through: int, following: bool) -> int:
    """Where a read starts: `after` (None: the oldest retained), checked against the log's bookkeeping.

    A cursor ahead of the head is InvalidCursor from a caller, but CursorExpired for a follower that got it
    from this log (`following`): then the log lost entries it had committed, and the follower must resync.
    """
    if after is None:
        return trimmed_through
    if after > head:
        ahead = f"cursor {after} is ahead of this log (head {head})"
        raise CursorExpired(ahead) if following else InvalidCursor(ahead)
    if after < trimmed_through:
        raise CursorExpired(f"cursor {after} is older than the retained log (trimmed to {trimmed_through})")
    return after


def check_contiguous(start: int, entries: Sequence[LogEntry]) -> None:
    """CursorExpired unless `entries` are the ones right after position `start`: positions have no holes,
    so anything else means the log was trimmed past `start` (or lost entries) while it was being read."""
    for expected, entry in enumerate(entries, start + 1):
        if entry.position != expected:
            raise CursorExpired(f"the log no longer holds the entry after cursor {expected - 1}")


# -- reading and following ----------------------------------------------------------------------------------


Wait = Callable[[int], Awaitable[list[LogEntry]]]
"""Wait until entries after a position may have been committed; return the ones it read meanwhile (right
after that position), or none: the follower then reads them with `_entries_after`."""


class LogReading(abc.ABC):
    """The protocol's `read` and `follow`, from a backend's `_entries_after` and `_waiting`."""

    _follow_outage_budget: float
    _closed: bool

    @abc.abstractmethod
    async def _entries_after(
        self, after: int | None, count: int, *, following: bool
    ) -> tuple[int, list[LogEntry]]:
        """Where the read starts (`start_position`) and up to `count` entries right after it, in order."""

    @abc.abstractmethod
    def _waiting(self) -> AbstractAsyncContextManager[Wait]:
        """What one follower waits with, held from its start to its end (however it ends)."""

    async def read(self, after: str | None = None, *, limit: int = 100) -> LogPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        while True:
            try:
                start, entries = await self._entries_after(parse_cursor(after), limit + 1, following=False)
                break
            except CursorExpired:
                if after is not None:
                    raise
                # "From the oldest retained" cannot expire: a trim overtook this read, so the oldest moved on.
        page = entries[:limit]
        return LogPage(page, page[-1].cursor if page else str(start), more=len(entries) > limit)

    async def follow(self, after: str | None = None) -> AsyncGenerator[LogEntry, None]:
        """Read, yield, wait, read again; through outages shorter than `_follow_outage_budget`.

        What `_waiting()` holds (a connection, a change stream) is released when the follower ends, however
        it ends: closed, cancelled, failed. Every read after an outage or an idle wait checks the cursor
        against the log again, so a trim that overtook the follower, or lost entries, surface as
        CursorExpired.
        """
        position = parse_cursor(after)
        outage = Outage(self._follow_outage_budget)
        validated = False  # the log accepted the caller's cursor once; from then on it is one the log gave
        read_next = True  # read (checking the cursor) rather than wait
        async with self._waiting() as wait:
            while True:
                end_if_cancelled()
                try:
                    if self._closed:
                        raise StoreUnavailable("the log store is closed")
                    if read_next or position is None:
                        position, entries = await self._entries_after(
                            position, FOLLOW_BATCH, following=validated
                        )
                        validated = True
                    else:
                        entries = await wait(position)
                except StoreUnavailable as exc:
                    if self._closed:
                        raise
                    await outage.retry_or_raise(exc)
                    read_next = True
                    continue
                outage.reset()
                for entry in entries:
                    position = entry.position
                    yield entry
                # After a full page, read on; after a partial one, wait; after waiting, wait again unless it
                # came back empty (an idle wait, or a backend that only waits): then read.
                read_next = len(entries) == FOLLOW_BATCH if read_next else not entries


async def woken_or_polled(wake: asyncio.Event, poll_interval: float) -> list[LogEntry]:
    """A `Wait` for backends that poll: until `wake` is set (an append by this store object) or for
    `poll_interval` seconds (the appends of others).

    Cleared on return, before the follower reads: an append during that read sets it again, so the next
    wait returns at once and nothing is missed.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(poll_interval):
            await wake.wait()
    wake.clear()
    return []
