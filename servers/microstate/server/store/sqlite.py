"""The embedded SQLite store: the zero-infrastructure default backend (aiosqlite).

One database file can hold many namespaces. Each namespace owns these tables and one bookkeeping row:

- ``records_<ns>`` (key, value, revision, expires_at), WITHOUT ROWID so the primary-key b-tree *is* key
  order, which makes prefix listing a range scan and keyset paging trivial;
- ``changes_<ns>`` (seq, kind, key, value, expires_at, commit_time), the change log;
- a row of ``microstate_namespaces`` (head, trimmed_through);
- ``audit_<ns>`` (key = the write's seq, entry), the audit journal of audited writes (audit/audited.py),
  filled through the view ``audited_changes_<ns>``, whose insert trigger writes a change-log row and its
  journal entry in one statement.

Every write bumps ``head`` and writes the record and its change-log row in ONE ``BEGIN IMMEDIATE``
transaction, so the ``if_match`` check and the write are atomic across connections and processes; a
revision, a change's sequence and its cursor are the same number (the cursor is ``str(seq)``); and, SQLite
having one writer at a time, sequence order is commit order. The log keeps the newest ``retention``
changes; ``trimmed_through`` remembers how far it was cut, so an older cursor is reported as expired rather
than silently skipping changes.

Durability: WAL with ``synchronous=FULL``. WAL with NORMAL already survives a process crash (committed
pages sit in the OS page cache) but can lose the last commits on power loss or an OS crash; FULL fsyncs
the WAL on every commit so an acknowledged write survives those too, for about one fsync per write.

TTL: expiry is enforced on every read and precondition (expired = absent). Expired rows are removed lazily
by the next write of the key and by a periodic purge. Expiry is not a change, so it is not in the log
(watchers get ``expires_at`` with each record).

Erasure (`forget`): a deleted key's older change-log rows are removed with it, every connection runs with
``secure_delete`` so removed rows are overwritten with zeros in the file, and a TRUNCATE checkpoint empties
the WAL, which still holds older images of the pages. A key can survive as a divider in an interior b-tree
page until the next VACUUM (SECURITY.md).

Watch wakes at once on this object's own commits and polls every ``poll_interval`` seconds for commits
made by other connections or processes sharing the file.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import aiosqlite

from microstate.server.cancellation import end_if_cancelled
from microstate.server.store._shared import check_ttl, prefix_end, require_positive, set_up
from microstate.server.store._sqlite import Database, open_database, read_journal
from microstate.server.store._url_settings import settings_from_url
from microstate.server.store.base import (
    Capabilities,
    Change,
    ChangeKind,
    CursorExpired,
    IfMatch,
    InvalidCursor,
    Page,
    Record,
    StoreUnavailable,
    check_namespace,
    require_precondition,
)

log = logging.getLogger(__name__)

DEFAULT_RETENTION: Final = 100_000
"""Change-log entries kept per namespace; a watch cursor older than that is CursorExpired."""
DEFAULT_POLL_INTERVAL: Final = 0.2
"""Seconds between change-log polls while watching (for writes made by other processes)."""
DEFAULT_PURGE_INTERVAL: Final = 60.0
"""Seconds between purges of expired records."""
DEFAULT_BUSY_TIMEOUT: Final = 5.0
"""Seconds to wait for another connection's write lock before StoreUnavailable."""

_WATCH_BATCH: Final = 256
_BATCH_GET_CHUNK: Final = 500  # well under SQLite's bound-parameter limit
_CURSOR = re.compile(r"[0-9]{1,19}")

_T = TypeVar("_T")


def database_path(url_or_path: str | os.PathLike[str]) -> str:
    """The file path of ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain path."""
    if isinstance(url_or_path, os.PathLike):
        return os.fspath(url_or_path)
    if not url_or_path.startswith("sqlite:"):
        return url_or_path
    parts = urlsplit(url_or_path)
    usage = "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
    if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
        raise ValueError(f"bad SQLite store URL {url_or_path!r}: {usage}")
    if parts.path == "/":  # SQLite would open a private temporary database, gone at the next start
        raise ValueError(f"the SQLite store URL {url_or_path!r} names no file: {usage}")
    return unquote(parts.path[1:])


def _key_range(prefix: str) -> tuple[str, list[Any]]:
    """A WHERE fragment selecting keys with `prefix` as an index range (no LIKE, so `%` and `_` are plain)."""
    end = prefix_end(prefix)
    if end is None:
        return "key >= ?", [prefix]
    return "key >= ? AND key < ?", [prefix, end]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _record(row: sqlite3.Row) -> Record:
    return Record(key=row[0], value=row[1], revision=row[2], expires_at=row[3])


class SqliteStore:
    """A namespace in an SQLite file; safe for several connections and processes on one host."""

    capabilities = Capabilities(durable=True, shared=True, native_ttl=False)

    def __init__(self, db: Database, namespace: str, *, retention: int, poll_interval: float) -> None:
        self._db = db
        self._namespace = namespace
        self._records = _quote(f"records_{namespace}")
        self._changes = _quote(f"changes_{namespace}")
        self._audit = _quote(f"audit_{namespace}")
        self._audited_changes = _quote(f"audited_changes_{namespace}")
        self._retention = retention
        self._poll_interval = poll_interval
        self._watchers: set[asyncio.Event] = set()
        self._purger: asyncio.Task[None] | None = None

    @classmethod
    @settings_from_url()
    async def open(
        cls,
        url_or_path: str | os.PathLike[str],
        namespace: str,
        *,
        retention: int = DEFAULT_RETENTION,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        purge_interval: float = DEFAULT_PURGE_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> SqliteStore:
        """Open (creating if needed) the database file and the namespace's tables.

        The file's directory must exist: a missing directory is an unusable store, not something to create
        silently. A file that cannot be opened raises StoreMisconfigured naming the path; an empty path
        (SQLite's private temporary database) raises ValueError. Every keyword setting may also come from
        the URL's query (`sqlite:///x.db?busy_timeout=2`, see _url_settings.py); SQLite takes no other query
        parameter.
        """
        check_namespace(namespace)
        require_positive(retention=retention, poll_interval=poll_interval, purge_interval=purge_interval)
        path = database_path(url_or_path)
        db = await open_database(path, busy_timeout=busy_timeout)
        store = cls(db, namespace, retention=retention, poll_interval=poll_interval)
        await set_up(store, store._setup(), name=f"SQLite store {path}")
        store._purger = asyncio.create_task(store._purge_periodically(purge_interval))
        return store

    async def _setup(self) -> None:
        async def schema(conn: aiosqlite.Connection) -> None:
            await conn.execute_fetchall(
                "CREATE TABLE IF NOT EXISTS microstate_namespaces (name TEXT PRIMARY KEY,"
                " head INTEGER NOT NULL DEFAULT 0, trimmed_through INTEGER NOT NULL DEFAULT 0)"
            )
            await conn.execute_fetchall(
                f"CREATE TABLE IF NOT EXISTS {self._records} (key TEXT PRIMARY KEY, value BLOB NOT NULL,"
                " revision INTEGER NOT NULL, expires_at REAL) WITHOUT ROWID"
            )
            await conn.execute_fetchall(
                f"CREATE INDEX IF NOT EXISTS {_quote(f'expiry_{self._namespace}')}"
                f" ON {self._records} (expires_at) WHERE expires_at IS NOT NULL"
            )
            await conn.execute_fetchall(
                f"CREATE TABLE IF NOT EXISTS {self._changes} (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                " key TEXT NOT NULL, value BLOB, expires_at REAL, commit_time REAL NOT NULL)"
            )
            await conn.execute_fetchall(
                f"CREATE TABLE IF NOT EXISTS {self._audit} (key INTEGER PRIMARY KEY, entry BLOB NOT NULL)"
            )
            # A change and its audit entry in one statement (one trip to the connection's thread, not two):
            # inserting into this view inserts into both tables, or into neither.
            await conn.execute_fetchall(
                f"CREATE VIEW IF NOT EXISTS {self._audited_changes} AS SELECT seq, kind, key, value,"
                f" expires_at, commit_time, NULL AS entry FROM {self._changes}"
            )
            await conn.execute_fetchall(
                f"CREATE TRIGGER IF NOT EXISTS {_quote(f'audited_changes_{self._namespace}_insert')}"
                f" INSTEAD OF INSERT ON {self._audited_changes} BEGIN"
                f" INSERT INTO {self._changes} (seq, kind, key, value, expires_at, commit_time)"
                " VALUES (NEW.seq, NEW.kind, NEW.key, NEW.value, NEW.expires_at, NEW.commit_time);"
                f" INSERT INTO {self._audit} (key, entry) VALUES (NEW.seq, NEW.entry); END"
            )
            await conn.execute_fetchall(
                "INSERT OR IGNORE INTO microstate_namespaces (name) VALUES (?)", [self._namespace]
            )

        await self._run("BEGIN IMMEDIATE", schema)
        await self._purge_expired()

    # -- running statements ------------------------------------------------------------------------------

    async def _run(self, begin: str | None, work: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """Run `work` in a transaction opened with `begin` (None: autocommit); see `Database.run`."""
        return await self._db.run(begin, work)

    async def _write(self, work: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        result = await self._run("BEGIN IMMEDIATE", work)
        for wake in self._watchers:
            wake.set()
        return result

    async def _next_seq(self, conn: aiosqlite.Connection) -> int:
        """Take the next sequence number for a write and trim the change log to `retention` entries."""
        rows = await conn.execute_fetchall(
            "UPDATE microstate_namespaces SET head = head + 1,"
            " trimmed_through = MAX(trimmed_through, head + 1 - ?) WHERE name = ?"
            " RETURNING head, trimmed_through",
            [self._retention, self._namespace],
        )
        seq, trimmed_through = next(iter(rows))
        if trimmed_through > 0:
            await conn.execute_fetchall(f"DELETE FROM {self._changes} WHERE seq <= ?", [trimmed_through])
        return int(seq)

    async def _log(
        self,
        conn: aiosqlite.Connection,
        seq: int,
        kind: ChangeKind,
        key: str,
        value: bytes | None,
        expires_at: float | None,
        now: float,
        audit: bytes | None = None,
    ) -> None:
        """Log the change; with `audit`, append that entry to the audit journal in the same statement."""
        if audit is None:
            await conn.execute_fetchall(
                f"INSERT INTO {self._changes} (seq, kind, key, value, expires_at, commit_time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [seq, kind.value, key, value, expires_at, now],
            )
            return
        await conn.execute_fetchall(
            f"INSERT INTO {self._audited_changes} (seq, kind, key, value, expires_at, commit_time, entry)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [seq, kind.value, key, value, expires_at, now, audit],
        )

    async def _stored(self, conn: aiosqlite.Connection, key: str) -> Record | None:
        """The stored row for `key`, live or expired."""
        rows = await conn.execute_fetchall(
            f"SELECT key, value, revision, expires_at FROM {self._records} WHERE key = ?", [key]
        )
        return next((_record(row) for row in rows), None)

    # -- the Store protocol ------------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        async def work(conn: aiosqlite.Connection) -> Record | None:
            rows = await conn.execute_fetchall(
                f"SELECT key, value, revision, expires_at FROM {self._records}"
                " WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                [key, time.time()],
            )
            return next((_record(row) for row in rows), None)

        return await self._run(None, work)

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        unique = builtins.list(dict.fromkeys(keys))

        async def work(conn: aiosqlite.Connection) -> dict[str, Record]:
            found: dict[str, Record] = {}
            now = time.time()
            for start in range(0, len(unique), _BATCH_GET_CHUNK):
                chunk = unique[start : start + _BATCH_GET_CHUNK]
                rows = await conn.execute_fetchall(
                    f"SELECT key, value, revision, expires_at FROM {self._records}"
                    f" WHERE key IN ({', '.join('?' * len(chunk))})"
                    " AND (expires_at IS NULL OR expires_at > ?)",
                    [*chunk, now],
                )
                found.update((row[0], _record(row)) for row in rows)
            return found

        if not unique:
            return {}
        # Several chunks are read in one transaction, so the result is one consistent snapshot.
        return await self._run("BEGIN" if len(unique) > _BATCH_GET_CHUNK else None, work)

    async def audit_journal(self, after: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        return await read_journal(self._db, self._audit, after, limit)

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: IfMatch = None,
        ttl: float | None = None,
        audit: bytes | None = None,
    ) -> Record:
        check_ttl(ttl)

        async def work(conn: aiosqlite.Connection) -> Record:
            now = time.time()
            stored = await self._stored(conn, key)
            current = _live(stored, now)
            require_precondition(key, if_match, current)
            seq = await self._next_seq(conn)
            expires_at = None if ttl is None else now + ttl
            await conn.execute_fetchall(
                f"INSERT INTO {self._records} (key, value, revision, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision,"
                " expires_at = excluded.expires_at",
                [key, value, seq, expires_at],
            )
            kind = ChangeKind.CREATED if current is None else ChangeKind.UPDATED
            await self._log(conn, seq, kind, key, value, expires_at, now, audit)
            return Record(key=key, value=value, revision=seq, expires_at=expires_at)

        return await self._write(work)

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        async def work(conn: aiosqlite.Connection) -> bool:
            now = time.time()
            stored = await self._stored(conn, key)
            current = _live(stored, now)
            require_precondition(key, if_match, current)
            if stored is None:
                return False
            await conn.execute_fetchall(f"DELETE FROM {self._records} WHERE key = ?", [key])
            if current is None:  # it had expired: a lazy purge, not a change
                return False
            seq = await self._next_seq(conn)
            await self._log(conn, seq, ChangeKind.DELETED, key, None, None, now, audit)
            return True

        return await self._write(work)

    async def forget(self, keys: Sequence[str], *, keep_deletions: bool = True) -> None:
        """Remove the change-log rows of `keys` — but their deletions with `keep_deletions`, so watchers
        still learn that the keys went — and leave no copy of what the removed rows held in the file or its
        WAL (see the module docstring). Meant for keys just deleted."""
        doomed = list(keys)
        spared = ChangeKind.DELETED.value if keep_deletions else ""

        async def scrub(conn: aiosqlite.Connection) -> None:
            for start in range(0, len(doomed), _BATCH_GET_CHUNK):
                chunk = doomed[start : start + _BATCH_GET_CHUNK]
                marks = ", ".join("?" * len(chunk))
                await conn.execute_fetchall(
                    f"DELETE FROM {self._changes} WHERE kind != ? AND key IN ({marks})", [spared, *chunk]
                )

        if doomed:
            await self._run("BEGIN IMMEDIATE", scrub)
        await self._db.checkpoint()

    async def head_cursor(self) -> str:
        return str(await self._run(None, self._head))

    async def _head(self, conn: aiosqlite.Connection) -> int:
        rows = await conn.execute_fetchall(
            "SELECT head FROM microstate_namespaces WHERE name = ?", [self._namespace]
        )
        return int(next(iter(rows))[0])

    async def ping(self) -> None:
        await self.head_cursor()

    async def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncIterator[Change]:
        """Changes strictly after cursor `after`; None means after the head at the first iteration."""
        if after is not None and not _CURSOR.fullmatch(after):
            raise InvalidCursor(f"not a cursor of this store: {after!r}")
        position = int(after) if after is not None else await self._run(None, self._head)
        wake = asyncio.Event()
        self._watchers.add(wake)
        try:
            first = True
            while True:
                end_if_cancelled()
                wake.clear()  # before reading, so a commit during the read still wakes the next wait
                head, rows = await self._read_changes(position, prefix, check_future=first)
                first = False
                for row in rows:
                    position = row[0]
                    yield _change(row)
                if len(rows) == _WATCH_BATCH:
                    continue
                # Nothing matching up to `head` was left unread, so later reads can start there.
                position = max(position, head)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await wake.wait()
        finally:
            self._watchers.discard(wake)

    async def _read_changes(
        self, position: int, prefix: str, *, check_future: bool
    ) -> tuple[int, builtins.list[sqlite3.Row]]:
        key_range, key_params = _key_range(prefix)

        async def work(conn: aiosqlite.Connection) -> tuple[int, builtins.list[sqlite3.Row]]:
            meta = await conn.execute_fetchall(
                "SELECT head, trimmed_through FROM microstate_namespaces WHERE name = ?", [self._namespace]
            )
            head, trimmed_through = next(iter(meta))
            if check_future and position > head:
                raise InvalidCursor(f"cursor {position} is ahead of this store's log (head {head})")
            if position < trimmed_through:
                raise CursorExpired(f"cursor {position} is older than the retained change log")
            rows = await conn.execute_fetchall(
                f"SELECT seq, kind, key, value, expires_at, commit_time FROM {self._changes}"
                f" WHERE seq > ? AND {key_range} ORDER BY seq LIMIT ?",
                [position, *key_params, _WATCH_BATCH],
            )
            return int(head), builtins.list(rows)

        # One read transaction: the bookkeeping row and the log rows come from the same snapshot.
        return await self._run("BEGIN", work)

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        key_range, params = _key_range(prefix)
        where = f"{key_range} AND (expires_at IS NULL OR expires_at > ?)"
        if after is not None:
            where += " AND key > ?"

        async def work(conn: aiosqlite.Connection) -> Page:
            rows = builtins.list(
                await conn.execute_fetchall(
                    f"SELECT key, value, revision, expires_at FROM {self._records}"
                    f" WHERE {where} ORDER BY key LIMIT ?",
                    [*params, time.time(), *([] if after is None else [after]), limit + 1],
                )
            )
            records = [_record(row) for row in rows[:limit]]
            return Page(records=records, next_after=records[-1].key if len(rows) > limit else None)

        return await self._run(None, work)

    async def close(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        await self._db.close()
        for wake in self._watchers:  # watchers then fail with StoreUnavailable instead of polling forever
            wake.set()

    # -- expiry ------------------------------------------------------------------------------------------

    async def _purge_expired(self) -> None:
        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute_fetchall(f"DELETE FROM {self._records} WHERE expires_at <= ?", [time.time()])

        await self._run("BEGIN IMMEDIATE", work)

    async def _purge_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._purge_expired()
            except StoreUnavailable as exc:
                log.warning("purging expired records failed; will retry: %s", exc)


def _live(record: Record | None, now: float) -> Record | None:
    """`record` unless it has expired by `now`."""
    if record is None or (record.expires_at is not None and record.expires_at <= now):
        return None
    return record


def _change(row: sqlite3.Row) -> Change:
    seq, kind, key, value, expires_at, commit_time = row
    change_kind = ChangeKind(kind)
    record = None
    if change_kind is not ChangeKind.DELETED:
        record = Record(key=key, value=value, revision=seq, expires_at=expires_at)
    return Change(kind=change_kind, key=key, record=record, cursor=str(seq), commit_time=commit_time)


__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_PURGE_INTERVAL",
    "DEFAULT_RETENTION",
    "SqliteStore",
    "database_path",
    "prefix_end",
]
