"""The SQLite log store: a table per namespace, one ``BEGIN IMMEDIATE`` transaction per append.

In the same file as the records store may use (`sqlite:///relative.db`, `sqlite:////absolute.db`), a log
namespace ``ns`` owns:

- ``logentries_<ns>`` (position INTEGER PRIMARY KEY, data, commit_time): the entries, the position being
  the rowid, so reads after a cursor and trims are range scans;
- ``logkeys_<ns>`` (dedupe_key, first, count, commit_time): the dedupe keys of recent appends;
- a row of ``microstate_logs`` (head, trimmed_through): the last position given, and how far trims cut.

An append checks its dedupe key, bumps ``head`` by the number of entries, inserts them and records the key
in ONE transaction. SQLite has one writer at a time, so appends of every connection and process are
serialised: positions are contiguous per append, increase in commit order, and two appends racing with one
key see each other (the second finds the first's key). Commit times come from this host's clock.

Durability and opening as in the records store (store/_sqlite.py): WAL with ``synchronous=FULL``, so an
acknowledged append survives a crash or power loss; ``busy_timeout`` bounds the wait for another process's
write lock. Followers wake at once on this object's own appends and poll every ``poll_interval`` seconds
for appends of other connections or processes; they retry failed reads (a database locked for longer than
``busy_timeout``) for up to ``follow_outage_budget`` seconds.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence

import aiosqlite

from microstate.server.store._shared import set_up
from microstate.server.store._sqlite import Database, open_database, read_journal
from microstate.server.store.base import check_namespace
from microstate.server.store.log._shared import (
    DEFAULT_FOLLOW_OUTAGE_BUDGET,
    TRIM_BATCH,
    LogReading,
    Wait,
    check_append,
    check_dedupe_window,
    start_position,
    woken_or_polled,
)
from microstate.server.store.log.base import (
    DEFAULT_DEDUPE_WINDOW,
    Appended,
    LogCapabilities,
    LogEntry,
)
from microstate.server.store.sqlite import DEFAULT_BUSY_TIMEOUT, DEFAULT_POLL_INTERVAL, database_path


def _quote(identifier: str) -> str:
    return '"' + identifier + '"'  # namespaces match NAMESPACE_PATTERN: no quote to escape


class SqliteLog(LogReading):
    """A log namespace in an SQLite file; safe for several connections and processes on one host."""

    capabilities = LogCapabilities(durable=True, shared=True)

    def __init__(
        self,
        db: Database,
        namespace: str,
        *,
        dedupe_window: float,
        poll_interval: float,
        follow_outage_budget: float,
    ) -> None:
        self._db = db
        self._namespace = namespace
        self._entries = _quote(f"logentries_{namespace}")
        self._keys = _quote(f"logkeys_{namespace}")
        self._audit = _quote(f"logaudit_{namespace}")
        self._dedupe_window = dedupe_window
        self._poll_interval = poll_interval
        self._follow_outage_budget = follow_outage_budget
        self._followers: set[asyncio.Event] = set()
        self._closed = False

    @classmethod
    async def open(
        cls,
        url_or_path: str | os.PathLike[str],
        namespace: str,
        *,
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        follow_outage_budget: float = DEFAULT_FOLLOW_OUTAGE_BUDGET,
    ) -> SqliteLog:
        """Open (creating if needed) the database file and the namespace's tables."""
        check_namespace(namespace)
        check_dedupe_window(dedupe_window)
        db = await open_database(database_path(url_or_path), busy_timeout=busy_timeout)
        log = cls(
            db,
            namespace,
            dedupe_window=dedupe_window,
            poll_interval=poll_interval,
            follow_outage_budget=follow_outage_budget,
        )
        return await set_up(log, db.run("BEGIN IMMEDIATE", log._create_tables))

    async def _create_tables(self, conn: aiosqlite.Connection) -> None:
        await conn.execute_fetchall(
            "CREATE TABLE IF NOT EXISTS microstate_logs (name TEXT PRIMARY KEY,"
            " head INTEGER NOT NULL DEFAULT 0, trimmed_through INTEGER NOT NULL DEFAULT 0)"
        )
        await conn.execute_fetchall(
            f"CREATE TABLE IF NOT EXISTS {self._entries} (position INTEGER PRIMARY KEY, data BLOB NOT NULL,"
            " commit_time REAL NOT NULL)"
        )
        await conn.execute_fetchall(
            f"CREATE TABLE IF NOT EXISTS {self._audit} (key INTEGER PRIMARY KEY, entry BLOB NOT NULL)"
        )
        await conn.execute_fetchall(
            f"CREATE TABLE IF NOT EXISTS {self._keys} (dedupe_key TEXT PRIMARY KEY, first INTEGER NOT NULL,"
            " count INTEGER NOT NULL, commit_time REAL NOT NULL)"
        )
        await conn.execute_fetchall(
            f"CREATE INDEX IF NOT EXISTS {_quote(f'logkeys_time_{self._namespace}')}"
            f" ON {self._keys} (commit_time)"
        )
        await conn.execute_fetchall(
            "INSERT OR IGNORE INTO microstate_logs (name) VALUES (?)", [self._namespace]
        )

    async def _bookkeeping(self, conn: aiosqlite.Connection) -> tuple[int, int]:
        """(head, trimmed_through) of this namespace."""
        rows = await conn.execute_fetchall(
            "SELECT head, trimmed_through FROM microstate_logs WHERE name = ?", [self._namespace]
        )
        head, trimmed_through = next(iter(rows))
        return int(head), int(trimmed_through)

    # -- the LogStore protocol ---------------------------------------------------------------------------

    async def append(
        self, entries: Sequence[bytes], *, dedupe_key: str | None = None, audit: bytes | None = None
    ) -> Appended:
        batch = check_append(entries, dedupe_key)

        async def work(conn: aiosqlite.Connection) -> Appended:
            now = time.time()
            if dedupe_key is not None:
                seen = await conn.execute_fetchall(
                    f"SELECT first, count, commit_time FROM {self._keys}"
                    " WHERE dedupe_key = ? AND commit_time > ?",
                    [dedupe_key, now - self._dedupe_window],
                )
                for first, count, commit_time in seen:
                    return Appended(range(first, first + count), commit_time, duplicate=True)
            rows = await conn.execute_fetchall(
                "UPDATE microstate_logs SET head = head + ? WHERE name = ? RETURNING head",
                [len(batch), self._namespace],
            )
            first = int(next(iter(rows))[0]) - len(batch) + 1
            async with conn.executemany(
                f"INSERT INTO {self._entries} (position, data, commit_time) VALUES (?, ?, ?)",
                [(first + offset, data, now) for offset, data in enumerate(batch)],
            ):
                pass
            if audit is not None:
                await conn.execute_fetchall(f"INSERT INTO {self._audit} VALUES (?, ?)", [first, audit])
            if dedupe_key is not None:  # replaces an expired key's row
                await conn.execute_fetchall(
                    f"INSERT OR REPLACE INTO {self._keys} (dedupe_key, first, count, commit_time)"
                    " VALUES (?, ?, ?, ?)",
                    [dedupe_key, first, len(batch), now],
                )
            return Appended(range(first, first + len(batch)), now, duplicate=False)

        appended = await self._db.run("BEGIN IMMEDIATE", work)
        self._wake_followers()
        return appended

    async def audit_journal(self, after: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        return await read_journal(self._db, self._audit, after, limit)

    async def _entries_after(
        self, after: int | None, count: int, *, following: bool
    ) -> tuple[int, builtins.list[LogEntry]]:
        async def work(conn: aiosqlite.Connection) -> tuple[int, builtins.list[LogEntry]]:
            head, trimmed_through = await self._bookkeeping(conn)
            start = start_position(after, head=head, trimmed_through=trimmed_through, following=following)
            rows = await conn.execute_fetchall(
                f"SELECT position, data, commit_time FROM {self._entries}"
                " WHERE position > ? ORDER BY position LIMIT ?",
                [start, count],
            )
            return start, [LogEntry._make(row) for row in rows]

        # One read transaction: the bookkeeping row and the entries come from the same snapshot.
        return await self._db.run("BEGIN", work)

    @contextlib.asynccontextmanager
    async def _waiting(self) -> AsyncIterator[Wait]:
        """Followers wake at once on this object's appends, and poll for other connections' appends."""
        wake = asyncio.Event()
        self._followers.add(wake)
        try:
            yield lambda _position: woken_or_polled(wake, self._poll_interval)
        finally:
            self._followers.discard(wake)

    async def head(self) -> str:
        head, _ = await self._db.run(None, self._bookkeeping)
        return str(head)

    async def trim(self, before_time: float) -> int:
        dropped = 0
        while True:  # in steps, so other writers get the lock in between
            step = await self._db.run("BEGIN IMMEDIATE", lambda conn: self._trim_step(conn, before_time))
            dropped += step
            if step < TRIM_BATCH:
                return dropped

    async def _trim_step(self, conn: aiosqlite.Connection, before_time: float) -> int:
        """Drop up to TRIM_BATCH of the oldest entries committed before `before_time`, and expired keys."""
        head, trimmed_through = await self._bookkeeping(conn)
        reach = min(head, trimmed_through + TRIM_BATCH)
        kept = await conn.execute_fetchall(
            f"SELECT position FROM {self._entries} WHERE position > ? AND position <= ? AND commit_time >= ?"
            " ORDER BY position LIMIT 1",
            [trimmed_through, reach, before_time],
        )
        cut = next((int(row[0]) - 1 for row in kept), reach)
        if cut > trimmed_through:
            await conn.execute_fetchall(f"DELETE FROM {self._entries} WHERE position <= ?", [cut])
            await conn.execute_fetchall(
                "UPDATE microstate_logs SET trimmed_through = ? WHERE name = ?", [cut, self._namespace]
            )
        await conn.execute_fetchall(
            f"DELETE FROM {self._keys} WHERE commit_time <= ?", [time.time() - self._dedupe_window]
        )
        return cut - trimmed_through

    async def ping(self) -> None:
        await self.head()

    async def close(self) -> None:
        self._closed = True
        await self._db.close()
        self._wake_followers()  # followers then fail with StoreUnavailable instead of polling forever

    def _wake_followers(self) -> None:
        for wake in self._followers:
            wake.set()


__all__ = ["SqliteLog"]
