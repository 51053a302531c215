"""SQLite plumbing shared by the records store and the log store (aiosqlite).

`open_database` opens a file in WAL mode with ``synchronous=FULL``; `Database.run` runs statements on its one
connection one transaction at a time, cancellation-safe, turning driver failures into StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from microstate.server.store._shared import guard, set_up
from microstate.server.store.base import StoreMisconfigured, StoreUnavailable

WAL_SWITCH_ATTEMPTS: Final = 50
CHECKPOINT_ATTEMPTS: Final = 40
"""Tries at switching a new file to WAL while another process holds the lock (see `open_database`)."""

_T = TypeVar("_T")


def unavailable(exc: BaseException) -> StoreUnavailable:
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return StoreUnavailable(f"sqlite store failed ({name}): {exc}")


def _classify(exc: Exception) -> StoreUnavailable | None:
    """StoreUnavailable for failures of the file or the engine; None for errors of a statement (bugs)."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError | OSError):
        return unavailable(exc)
    if type(exc) is sqlite3.DatabaseError:  # "file is not a database", "disk image is malformed"
        return unavailable(exc)
    return None


class Database:
    """One aiosqlite connection that runs one transaction at a time."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn: aiosqlite.Connection | None = conn
        # One aiosqlite connection runs statements in order on its thread; the lock keeps one coroutine's
        # transaction from interleaving with another's statements (which would read uncommitted data).
        self._lock = asyncio.Lock()

    async def run(self, begin: str | None, work: Callable[[aiosqlite.Connection], Awaitable[_T]]) -> _T:
        """Run `work` under the lock, inside a transaction opened with `begin` (None: autocommit).

        Shielded: a cancelled caller must not abandon a transaction half-way on the shared connection; the
        transaction still commits or rolls back, and releases the lock, in the background.
        """
        task = asyncio.ensure_future(self._run_locked(begin, work))
        # Retrieve the outcome even when nobody awaits it any more (no "exception never retrieved" noise).
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(task)

    async def _run_locked(
        self, begin: str | None, work: Callable[[aiosqlite.Connection], Awaitable[_T]]
    ) -> _T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailable("the sqlite store is closed")
            return await guard(_transaction(conn, begin, work), _classify)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it to nothing, so no older image of a page
        (a row since deleted) stays in the -wal file. Another connection reading at that moment keeps the
        WAL busy: tried again for about a second, then StoreUnavailable (the caller may retry later)."""

        async def truncate(conn: aiosqlite.Connection) -> bool:
            rows = await conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            return bool(next(iter(rows))[0] == 0)

        for attempt in range(CHECKPOINT_ATTEMPTS):
            if await self.run(None, truncate):
                return
            await asyncio.sleep(0.01 * (attempt + 1))  # backoff while a reader finishes, not synchronisation
        raise StoreUnavailable("the SQLite WAL stayed busy: another connection kept reading")

    async def close(self) -> None:
        """Close the connection once the running transaction is done; safe to call twice."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()


async def _transaction(
    conn: aiosqlite.Connection, begin: str | None, work: Callable[[aiosqlite.Connection], Awaitable[_T]]
) -> _T:
    if begin is None:
        return await work(conn)
    await conn.execute_fetchall(begin)
    try:
        result = await work(conn)
        await conn.execute_fetchall("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error, ValueError):
            await conn.execute_fetchall("ROLLBACK")
        raise
    return result


async def open_database(path: str, *, busy_timeout: float) -> Database:
    """Open (creating if needed) the file at `path` in WAL mode with ``synchronous=FULL``.

    The file's directory must exist: a missing directory is an unusable store, not something to create
    silently. A file that cannot be opened raises StoreMisconfigured naming the path; an empty path (SQLite's
    private temporary database, gone after a restart) raises ValueError. `busy_timeout` is how long a
    statement waits for another connection's write lock before StoreUnavailable.
    """
    if not path:
        raise ValueError("the SQLite store needs a file path (an empty one is a temporary database)")
    if path != ":memory:" and not Path(path).parent.is_dir():
        directory = Path(path).parent
        raise StoreMisconfigured(f"cannot open SQLite store {path}: directory {directory} does not exist")
    connection = aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        conn = await connection
    except (sqlite3.Error, OSError) as exc:
        # aiosqlite stops its worker thread after a failed connect without waiting for it; the thread would
        # then report to our event loop after it closed ("Event loop is closed" on stderr). Wait for it.
        await asyncio.to_thread(connection._thread.join)
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        raise StoreMisconfigured(f"cannot open SQLite store {path}: {exc} ({name})") from exc
    database = Database(conn)
    # A StoreUnavailable here is "file is not a database" or "database is locked": named with the path.
    return await set_up(database, database.run(None, _durable_wal), name=f"SQLite store {path}")


async def _durable_wal(conn: aiosqlite.Connection) -> None:
    # Switching a new file to WAL takes an exclusive lock and SQLite does not call the busy handler for it:
    # two processes opening a fresh file together can see "database is locked". Retry briefly.
    for attempt in range(WAL_SWITCH_ATTEMPTS):
        try:
            await conn.execute_fetchall("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_ATTEMPTS - 1:
                raise
            backoff = 0.01 * (attempt + 1)  # between attempts, not synchronisation
            await asyncio.sleep(backoff)
    await conn.execute_fetchall("PRAGMA synchronous=FULL")
    # Deleted rows are overwritten with zeros, not left in free space: an erased subject's data must not
    # survive in the file (kit/subjects.py). It costs a write of the freed bytes per delete.
    await conn.execute_fetchall("PRAGMA secure_delete=ON")


async def read_journal(db: Database, table: str, after: int, limit: int) -> list[tuple[int, bytes]]:
    """(key, entry) rows of an audit journal table (`key INTEGER PRIMARY KEY, entry BLOB`) after `after`,
    in key order, at most `limit`: what the records and log stores' `audit_journal` return."""

    async def work(conn: aiosqlite.Connection) -> list[tuple[int, bytes]]:
        rows = await conn.execute_fetchall(
            f"SELECT key, entry FROM {table} WHERE key > ? ORDER BY key LIMIT ?", [after, limit]
        )
        return [(int(row[0]), bytes(row[1])) for row in rows]

    return await db.run(None, work)
