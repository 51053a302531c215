"""The append-only log role: one async interface every log backend implements.

A log store holds one namespace (one microstate's log, e.g. telemetry batches or audit entries) of opaque
byte entries in commit order. Each entry gets a *position*, an integer that increases by exactly one per
entry within the namespace (1, 2, 3, ... with no holes, across processes and restarts), and a *commit time*
from the store's clock. Positions are never reused: `trim` drops the oldest entries but the next append
still continues after the last position ever given.

Cursors are opaque strings naming a place *between* entries: the cursor of an entry means "after that
entry", `"0"` means "before the first entry ever" (expired once anything was trimmed), and `after=None`
means "from the oldest retained entry". Every backend raises only store/base.py's exceptions
(StoreUnavailable, CursorExpired, InvalidCursor), plus ValueError and TypeError for bad arguments.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, runtime_checkable

DEFAULT_DEDUPE_WINDOW: Final = 600.0
"""Seconds a `dedupe_key` is remembered after its append (a producer's retries must land within it)."""
MAX_DEDUPE_KEY: Final = 256
"""Characters a `dedupe_key` may have (it is stored as a key on every backend)."""


class LogEntry(NamedTuple):
    """One entry of the log."""

    position: int
    """1 for the first entry ever appended, then one more per entry."""
    data: bytes
    commit_time: float
    """Unix time of the append that wrote it, by the store's clock (one time for all entries of an append)."""

    @property
    def cursor(self) -> str:
        """Pass to `read(after=...)` or `follow(after=...)` to continue after this entry."""
        return str(self.position)


@dataclass(frozen=True, slots=True)
class Appended:
    """What an `append` wrote (or, for a duplicate, what the original append wrote)."""

    positions: range
    """The positions of the appended entries, contiguous and in the order given."""
    commit_time: float
    duplicate: bool
    """True: the `dedupe_key` was already appended within the window; nothing was written this time."""

    @property
    def cursor(self) -> str:
        """The cursor after the last entry of this append."""
        return str(self.positions[-1])


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[LogEntry]
    cursor: str
    """Pass as `after` to read on: the last entry's cursor, or where this read started if it found none."""
    more: bool
    """The page was cut at `limit`: more entries existed when it was read."""


@dataclass(frozen=True, slots=True)
class LogCapabilities:
    durable: bool
    """Acknowledged appends survive a process crash."""
    shared: bool
    """Several server processes may append to and follow the same log at once."""


@runtime_checkable
class LogStore(Protocol):
    """An append-only log: atomic, deduplicated batch appends; paged reads; a resumable tail; TTL trim."""

    capabilities: LogCapabilities

    async def append(
        self, entries: Sequence[bytes], *, dedupe_key: str | None = None, audit: bytes | None = None
    ) -> Appended:
        """Append `entries` atomically: all of them, at contiguous positions, or none.

        With `audit`, the bytes are appended to the log's audit journal under the append's first position in
        the same atomic step (audit/audited.py); a duplicate writes neither.

        With `dedupe_key` (e.g. ``f"{producer_id}:{batch_seq}"``): if an append with the same key committed
        within the store's dedupe window (`dedupe_window` seconds, DEFAULT_DEDUPE_WINDOW unless opened with
        another), nothing is written and the original append's positions and commit time come back with
        `duplicate=True`, also when two appenders race with the same key. The entries of a duplicate are not
        compared with the original's: the key names the batch. So a producer may resend a batch whose reply
        it lost, and it counts once. Without a key a resent batch is appended again.

        Raises ValueError for no entries; StoreUnavailable when the store cannot be reached (the append may
        or may not have committed: resend it with the same `dedupe_key`).
        """
        ...

    async def audit_journal(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """(first position, audit bytes) of the journaled appends after position `after`, in order, at most
        `limit`. Never trimmed with the log."""
        ...

    async def read(self, after: str | None = None, *, limit: int = 100) -> LogPage:
        """Up to `limit` entries strictly after cursor `after` (None: from the oldest retained), in order.

        Raises InvalidCursor for a malformed cursor or one ahead of the log; CursorExpired for one older than
        the retained log (entries after it were trimmed); ValueError for limit < 1.
        """
        ...

    def follow(self, after: str | None = None) -> AsyncGenerator[LogEntry, None]:
        """Every entry strictly after `after` (None: from the oldest retained), in order, then each new one
        as it is committed, by any process: no gap, no duplicate. Never ends by itself; `aclose()` it, which
        releases every task and connection it holds (so does cancelling a pending `anext`, then `aclose()`).

        Backends hide outages shorter than their `follow_outage_budget` (default 30 s: retrying with
        backoff, then resuming after the last entry yielded); a longer one, or closing the store, ends the
        iteration with StoreUnavailable, and the caller resumes with the cursor of the last entry it got.
        Raises InvalidCursor and CursorExpired as `read` does; CursorExpired also when `trim` overtakes a
        follower that is behind, or when the store lost entries it had yielded (e.g. a Redis restart
        without persistence).
        """
        ...

    async def head(self) -> str:
        """The cursor after the last committed entry ("0" for a log never appended to)."""
        ...

    async def trim(self, before_time: float) -> int:
        """Drop the oldest entries committed before `before_time` (Unix time, the store's clock); return
        how many were dropped.

        The retained log stays a contiguous suffix: trimming stops at the first entry committed at or after
        `before_time` (entries are in commit order; only a store clock stepping back could leave an older
        entry behind a newer one, which then stays until the next one goes). Cursors from before the cut
        then raise CursorExpired. Also forgets dedupe keys older than the dedupe window where the backend
        does not expire them by itself. Call it periodically with ``now - retention``.
        """
        ...

    async def ping(self) -> None:
        """Return if the backend answers; raise StoreUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Release connections; running `follow`s end with StoreUnavailable. Safe to call twice."""
        ...


__all__ = [
    "DEFAULT_DEDUPE_WINDOW",
    "MAX_DEDUPE_KEY",
    "Appended",
    "LogCapabilities",
    "LogEntry",
    "LogPage",
    "LogStore",
]
