"""`SqlAdapter`: a slice's legacy side as a table of any DB-API database (SQLite tested), with its outbox.

The monolith's table is the monolith's: the adapter reads and writes the columns a `RowCodec` names and never
changes its schema. It adds three tables of its own beside it (`ensure_outbox`): the request ids it has
applied, the outbox entries, and a sequence counter. A write, its request id and its outbox entry commit in
one transaction. Calls run one at a time on one connection in a worker thread (DB-API is blocking), so the
event loop never waits on the database.

SQL is written with `?` placeholders and rewritten for the driver's paramstyle; it sticks to what SQLite,
PostgreSQL and MySQL share (no upsert syntax: UPDATE, then INSERT when no row matched; LIMIT for pages).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, TypeVar

from microstate.client.extraction.legacy import (
    Direction,
    M,
    OutboxCounts,
    OutboxEntry,
    Outcome,
    RowCodec,
)

T = TypeVar("T")
Connect = Callable[[], Any]
"""Opens a DB-API 2.0 connection (PEP 249)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PENDING = "pending"


def _identifier(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a plain SQL identifier")
    return name


def _paramstyled(sql: str, params: Sequence[Any], paramstyle: str) -> tuple[str, Any]:
    """`sql` written with `?` placeholders, rewritten for a driver of `paramstyle` (PEP 249)."""
    if paramstyle == "qmark":
        return sql, tuple(params)
    pieces = sql.split("?")
    if paramstyle in ("format", "pyformat"):
        return "%s".join(pieces), tuple(params)
    if paramstyle == "numeric":
        marks = [f":{number}" for number in range(1, len(pieces))]
        return "".join(piece + mark for piece, mark in zip(pieces, [*marks, ""], strict=True)), tuple(params)
    if paramstyle == "named":
        marks = [f":p{number}" for number in range(1, len(pieces))]
        named = {f"p{number}": value for number, value in enumerate(params, start=1)}
        return "".join(piece + mark for piece, mark in zip(pieces, [*marks, ""], strict=True)), named
    raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")


def connect_url(url: str) -> tuple[Connect, str]:
    """A connection factory and paramstyle for `url`: `sqlite:///path` (or `sqlite://` for memory) with the
    standard library, any other SQLAlchemy URL through SQLAlchemy's engine (installed separately)."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        path = url.removeprefix("sqlite://").removeprefix("/") or ":memory:"

        def open_sqlite() -> sqlite3.Connection:
            connection = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")  # readers (tests, reconcile) do not block writes
            return connection

        return open_sqlite, sqlite3.paramstyle
    import sqlalchemy  # optional: only for URLs sqlite3 cannot open

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    return engine.raw_connection, str(engine.dialect.paramstyle)


class SqlAdapter(Generic[M]):
    """A `LegacyAdapter` and `OutboxStore` over `table` (key column and columns from `codec`).

    `connect` opens a DB-API connection and `paramstyle` is its driver's; `SqlAdapter.from_url` builds both
    from a URL. The adapter's own tables are named `<outbox_prefix>requests`, `...outbox`, `...sequence`."""

    def __init__(
        self,
        connect: Connect,
        codec: RowCodec[M],
        table: str,
        *,
        paramstyle: str = "qmark",
        outbox_prefix: str = "microstate_",
    ) -> None:
        self._connect = connect
        self._codec = codec
        self._table = _identifier(table)
        self._key = _identifier(codec.key_column)
        self._columns = tuple(_identifier(column) for column in codec.columns)
        self._paramstyle = paramstyle
        prefix = _identifier(outbox_prefix)
        self._requests, self._outbox, self._sequence = (
            f"{prefix}requests",
            f"{prefix}outbox",
            f"{prefix}sequence",
        )
        self._connection: Any = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"legacy-sql-{table}")

    @classmethod
    def from_url(cls, url: str, codec: RowCodec[M], table: str, **options: Any) -> SqlAdapter[M]:
        connect, paramstyle = connect_url(url)
        return cls(connect, codec, table, paramstyle=paramstyle, **options)

    # -- plumbing ------------------------------------------------------------------------------------------

    async def _run(self, work: Callable[[Any], T]) -> T:
        """Run `work(cursor)` as one transaction on the worker thread: commit after, roll back on error."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, work)

    def _transaction(self, work: Callable[[Any], T]) -> T:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        cursor = connection.cursor()
        try:
            result = work(cursor)
            connection.commit()
            return result
        except BaseException:
            try:
                connection.rollback()
            except Exception:  # a broken connection: open a new one next time
                self._connection = None
            raise
        finally:
            cursor.close()

    def _execute(self, cursor: Any, sql: str, *params: Any) -> Any:
        cursor.execute(*_paramstyled(sql, params, self._paramstyle))
        return cursor

    async def ensure_outbox(self) -> None:
        """Create the adapter's own tables if they are missing (idempotent)."""

        def create(cursor: Any) -> None:
            for statement in (
                f"CREATE TABLE IF NOT EXISTS {self._requests} (request_id VARCHAR(200) PRIMARY KEY, "
                "record_key VARCHAR(400) NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS {self._outbox} (sequence BIGINT PRIMARY KEY, "
                "direction VARCHAR(16) NOT NULL, record_key VARCHAR(400) NOT NULL, "
                "request_id VARCHAR(200) NOT NULL, value BLOB, state VARCHAR(16) NOT NULL, "
                "attempts INTEGER NOT NULL, last_error TEXT NOT NULL)",
                f"CREATE INDEX IF NOT EXISTS {self._outbox}_by_state "
                f"ON {self._outbox} (direction, state, sequence)",
                f"CREATE TABLE IF NOT EXISTS {self._sequence} "
                "(name VARCHAR(16) PRIMARY KEY, value BIGINT NOT NULL)",
            ):
                self._execute(cursor, statement)
            if (
                self._execute(
                    cursor, f"SELECT value FROM {self._sequence} WHERE name = ?", "outbox"
                ).fetchone()
                is None
            ):
                self._execute(
                    cursor, f"INSERT INTO {self._sequence} (name, value) VALUES (?, ?)", "outbox", 0
                )

        await self._run(create)

    async def close(self) -> None:
        def close(_: Any) -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close, None)
        self._thread.shutdown(wait=True)

    # -- records -------------------------------------------------------------------------------------------

    def _select(self, cursor: Any, key: str) -> M | None:
        columns = ", ".join(self._columns)
        row = self._execute(
            cursor, f"SELECT {columns} FROM {self._table} WHERE {self._key} = ?", key
        ).fetchone()
        return None if row is None else self._codec.from_row(key, dict(zip(self._columns, row, strict=True)))

    async def get(self, key: str) -> M | None:
        return await self._run(lambda cursor: self._select(cursor, key))

    def _first_use(self, cursor: Any, key: str, request_id: str) -> bool:
        """Record `request_id` as applied; False if it already was (the write is then skipped)."""
        if self._execute(
            cursor, f"SELECT 1 FROM {self._requests} WHERE request_id = ?", request_id
        ).fetchone():
            return False
        self._execute(
            cursor, f"INSERT INTO {self._requests} (request_id, record_key) VALUES (?, ?)", request_id, key
        )
        return True

    def _store(self, cursor: Any, key: str, value: M) -> None:
        row = self._codec.to_row(value)
        values = [row.get(column) for column in self._columns]
        assignments = ", ".join(f"{column} = ?" for column in self._columns)
        sql = f"UPDATE {self._table} SET {assignments} WHERE {self._key} = ?"
        if self._execute(cursor, sql, *values, key).rowcount == 0:
            names = ", ".join((self._key, *self._columns))
            marks = ", ".join("?" * (len(self._columns) + 1))
            self._execute(cursor, f"INSERT INTO {self._table} ({names}) VALUES ({marks})", key, *values)

    def _remove(self, cursor: Any, key: str) -> bool:
        return bool(
            self._execute(cursor, f"DELETE FROM {self._table} WHERE {self._key} = ?", key).rowcount > 0
        )

    async def put(self, key: str, value: M, *, request_id: str, outbox: Direction | None = None) -> M:
        def write(cursor: Any) -> M | None:
            if self._first_use(cursor, key, request_id):
                self._store(cursor, key, value)
                if outbox is not None:
                    self._append(cursor, outbox, key, request_id, value.SerializeToString(deterministic=True))
            return self._select(cursor, key)

        stored = await self._run(write)
        assert stored is not None
        return stored

    async def delete(self, key: str, *, request_id: str, outbox: Direction | None = None) -> bool:
        def remove(cursor: Any) -> bool:
            if not self._first_use(cursor, key, request_id):
                return True
            deleted = self._remove(cursor, key)
            if outbox is not None:
                self._append(cursor, outbox, key, request_id, None)
            return deleted

        return await self._run(remove)

    async def scan(
        self, start: str = "", end: str = "", *, batch_size: int = 500
    ) -> AsyncIterator[tuple[str, M]]:
        columns = ", ".join((self._key, *self._columns))
        bound = f" AND {self._key} < ?" if end else ""
        after, inclusive = start, True
        while True:
            comparison = ">=" if inclusive else ">"
            sql = (
                f"SELECT {columns} FROM {self._table} WHERE {self._key} {comparison} ?{bound} "
                f"ORDER BY {self._key} LIMIT {int(batch_size)}"
            )
            params = (after, end) if end else (after,)
            rows: list[Any] = await self._run(partial(self._fetch_all, sql=sql, params=params))
            for key, *values in rows:
                yield key, self._codec.from_row(key, dict(zip(self._columns, values, strict=True)))
            if len(rows) < batch_size:
                return
            after, inclusive = rows[-1][0], False

    def _fetch_all(self, cursor: Any, *, sql: str, params: Sequence[Any]) -> list[Any]:
        return list(self._execute(cursor, sql, *params).fetchall())

    # -- outbox --------------------------------------------------------------------------------------------

    def _append(
        self, cursor: Any, direction: Direction, key: str, request_id: str, value: bytes | None
    ) -> int:
        self._execute(cursor, f"UPDATE {self._sequence} SET value = value + 1 WHERE name = ?", "outbox")
        sequence = int(
            self._execute(cursor, f"SELECT value FROM {self._sequence} WHERE name = ?", "outbox").fetchone()[
                0
            ]
        )
        other = Direction.REVERSE if direction is Direction.FORWARD else Direction.FORWARD
        self._execute(
            cursor,
            f"UPDATE {self._outbox} SET state = ? WHERE direction = ? AND record_key = ? AND state = ?",
            Outcome.SUPERSEDED.value, other.value, key, _PENDING,
        )  # fmt: skip
        self._execute(
            cursor,
            f"INSERT INTO {self._outbox} (sequence, direction, record_key, request_id, value, state, "
            "attempts, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            sequence, direction.value, key, request_id, value, _PENDING, 0, "",
        )  # fmt: skip
        return sequence

    async def append(self, direction: Direction, key: str, request_id: str, value: bytes | None) -> int:
        return await self._run(lambda cursor: self._append(cursor, direction, key, request_id, value))

    def _entries(
        self, cursor: Any, direction: Direction, state: str, limit: int, key: str | None = None
    ) -> list[OutboxEntry]:
        of_key = "" if key is None else " AND record_key = ?"
        sql = (
            f"SELECT sequence, record_key, request_id, value, attempts, last_error FROM {self._outbox} "
            f"WHERE direction = ? AND state = ?{of_key} ORDER BY sequence LIMIT {int(limit)}"
        )
        params = (direction.value, state) if key is None else (direction.value, state, key)
        return [
            OutboxEntry(
                int(sequence),
                direction,
                key,
                request_id,
                None if value is None else bytes(value),
                attempts,
                error,
            )
            for sequence, key, request_id, value, attempts, error in self._execute(cursor, sql, *params)
        ]

    async def pending(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        return await self._run(lambda cursor: self._entries(cursor, direction, _PENDING, limit))

    async def pending_for(self, direction: Direction, key: str) -> list[OutboxEntry]:
        return await self._run(lambda cursor: self._entries(cursor, direction, _PENDING, 1000, key))

    async def dead_letters(self, direction: Direction, *, limit: int = 100) -> list[OutboxEntry]:
        return await self._run(
            lambda cursor: self._entries(cursor, direction, Outcome.DEAD_LETTERED.value, limit)
        )

    async def retry_later(self, entry: OutboxEntry, error: str) -> None:
        sql = (
            f"UPDATE {self._outbox} SET attempts = attempts + 1, last_error = ? "
            "WHERE sequence = ? AND state = ?"
        )
        await self._run(lambda cursor: self._execute(cursor, sql, error, entry.sequence, _PENDING))

    def _settle(self, cursor: Any, entry: OutboxEntry, outcome: Outcome, error: str) -> None:
        sql = f"UPDATE {self._outbox} SET state = ?, last_error = ? WHERE sequence = ? AND state = ?"
        self._execute(cursor, sql, outcome.value, error, entry.sequence, _PENDING)

    async def settle(self, entry: OutboxEntry, outcome: Outcome, error: str = "") -> None:
        await self._run(lambda cursor: self._settle(cursor, entry, outcome, error))

    async def apply_reverse(self, entry: OutboxEntry, value: Any) -> bool:
        def apply(cursor: Any) -> bool:
            sql = f"SELECT 1 FROM {self._outbox} WHERE sequence = ? AND state = ?"
            if not self._execute(cursor, sql, entry.sequence, _PENDING).fetchone():
                return False
            if self._first_use(cursor, entry.key, entry.request_id):
                if value is None:
                    self._remove(cursor, entry.key)
                else:
                    self._store(cursor, entry.key, value)
            self._settle(cursor, entry, Outcome.APPLIED, "")
            return True

        return await self._run(apply)

    async def counts(self, direction: Direction) -> OutboxCounts:
        sql = f"SELECT state, COUNT(*) FROM {self._outbox} WHERE direction = ? GROUP BY state"
        totals = dict(await self._run(lambda cursor: self._execute(cursor, sql, direction.value).fetchall()))
        return OutboxCounts(
            appended=sum(totals.values()),
            pending=totals.get(_PENDING, 0),
            applied=totals.get(Outcome.APPLIED.value, 0),
            dead_lettered=totals.get(Outcome.DEAD_LETTERED.value, 0),
            superseded=totals.get(Outcome.SUPERSEDED.value, 0),
        )
