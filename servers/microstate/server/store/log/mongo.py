"""The MongoDB log store: PyMongo's `AsyncMongoClient`, one transaction per append.

Layout, in the URL's database (default ``microstate``), for log namespace ``ns``:

- ``logentries.<ns>`` — one document per entry: ``_id`` the position, ``t`` the commit time, ``d`` the data;
- ``logkeys.<ns>`` — one document per recent dedupe key: ``_id`` the key, ``first``, ``count``, ``t``, and
  ``expires_at`` (a date, commit time + ``dedupe_window``) with a TTL index, so the server forgets old keys;
  lookups compare ``expires_at`` themselves (the TTL monitor runs about once a minute);
- ``microstate_logs`` — one document per namespace: ``head`` (the last position given), ``trimmed_through``
  and ``committed`` (the server time of the last append).

An append is ONE multi-document transaction (PyMongo's `with_transaction`): bump ``head`` by the number of
entries (taking the server's clock, ``$$NOW``, as the commit time), look the dedupe key up (if it is live,
abort: nothing is written, the original append comes back), insert the entries, upsert the key. Every
append writes the ``head`` document, so concurrent appenders conflict instead of interleaving; the loser's
transaction is run again (with backoff, within ``conflict_budget`` seconds), and on its second run it sees
the winner's head and key: positions are contiguous per append, follow commit order, and a key is
appended once. `with_transaction` also retries a commit whose outcome is unknown, so a network blip does not
turn into a duplicate. Appends of one store object queue behind an asyncio lock (no conflicts within one
process). Transactions need a replica set or mongos; a standalone mongod is refused at open.

Reads take ``head`` and ``trimmed_through`` first and entries up to that head only (all committed), then
check ``trimmed_through`` again: a trim that overtook the read is CursorExpired, never a silent gap.
A follower waits on a change stream of its namespace's ``microstate_logs`` document, its own, opened at its
first wait (it reads once more after opening it, so nothing committed in between is missed) and closed when
it ends; where change streams are unavailable it polls every ``poll_interval`` seconds. Outages shorter than
``follow_outage_budget`` are retried and resumed. Trims are transactions too, each moving
``trimmed_through`` and deleting up to TRIM_BATCH entries together.

Write concern ``majority`` unless the URL sets ``w=`` (``durable`` only then, or with ``journal=true``); every
read and write goes to the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import pymongo
from bson import Int64
from bson.datetime_ms import DatetimeMS
from pymongo import ReadPreference, ReturnDocument
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from microstate.server.store._shared import set_up
from microstate.server.store.base import CursorExpired, StoreUnavailable, check_namespace
from microstate.server.store.log._shared import (
    DEFAULT_FOLLOW_OUTAGE_BUDGET,
    TRIM_BATCH,
    LogReading,
    Wait,
    check_append,
    check_contiguous,
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
from microstate.server.store.mongo import (
    _CHANGE_STREAMS_UNSUPPORTED,
    _CLOSE_TIMEOUT,
    _CODEC,
    DEFAULT_CONFLICT_BUDGET,
    DEFAULT_POLL_INTERVAL,
    _guard,
    connect,
    create_bookkeeping,
    create_collections,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Doc = dict[str, Any]
_AWAIT_MS: Final = 1_000
"""How long one getMore of a follower's change stream waits on the server (then it reads the log anyway)."""


class MongoLog(LogReading):
    """A LogStore on MongoDB (see the module docstring for layout, atomicity and follow)."""

    def __init__(
        self,
        client: pymongo.AsyncMongoClient[_Doc],
        db: AsyncDatabase[_Doc],
        namespace: str,
        *,
        durable: bool,
        dedupe_window: float,
        poll_interval: float,
        change_streams: bool,
        follow_outage_budget: float,
        conflict_budget: float,
    ) -> None:
        self._client = client
        self._db = db
        self.namespace = namespace
        self.capabilities = LogCapabilities(durable=durable, shared=True)
        self._entries = db[f"logentries.{namespace}"]
        self._keys = db[f"logkeys.{namespace}"]
        self._audit = db[f"logaudit.{namespace}"]
        self._logs = db["microstate_logs"]
        self._dedupe_window_ms = round(dedupe_window * 1000)
        self._poll_interval = poll_interval
        self._change_streams = change_streams
        self._follow_outage_budget = follow_outage_budget
        self._conflict_budget = conflict_budget
        self._write_lock = asyncio.Lock()
        self._followers: set[asyncio.Event] = set()
        self._streams: set[AsyncChangeStream[_Doc]] = set()
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        change_streams: bool = True,
        follow_outage_budget: float = DEFAULT_FOLLOW_OUTAGE_BUDGET,
        conflict_budget: float = DEFAULT_CONFLICT_BUDGET,
        **client_options: Any,
    ) -> MongoLog:
        """Open the log `namespace` in the database of `url`, creating its collections if needed.

        `client_options` go to AsyncMongoClient, as for the records store. Raises StoreUnavailable if the
        server cannot be reached within the server selection timeout, StoreError if it has no transactions.
        """
        check_namespace(namespace)
        check_dedupe_window(dedupe_window)
        client, write_concern, database = connect(url, f"microstate-log-{namespace}", client_options)
        db = client.get_database(
            database,
            codec_options=_CODEC,
            write_concern=write_concern,
            read_preference=ReadPreference.PRIMARY,
        )
        durable = write_concern.document.get("w") == "majority" or bool(write_concern.document.get("j"))
        log_store = cls(
            client,
            db,
            namespace,
            durable=durable,
            dedupe_window=dedupe_window,
            poll_interval=poll_interval,
            change_streams=change_streams,
            follow_outage_budget=follow_outage_budget,
            conflict_budget=conflict_budget,
        )
        return await set_up(log_store, log_store._setup())

    async def _setup(self) -> None:
        await create_collections(self._entries, self._keys, self._audit, self._logs)
        await _guard(self._keys.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=0))
        await create_bookkeeping(self._transact, self._logs, self.namespace)

    async def _transact(self, work: Callable[[AsyncClientSession], Awaitable[_T]]) -> _T:
        """Run `work` in a transaction, after this object's earlier ones, retrying lost write conflicts for up
        to `conflict_budget` seconds (PyMongo's client-side timeout bounds the retries and every call)."""
        if self._closed:
            raise StoreUnavailable("the mongodb log store is closed")
        async with self._write_lock:
            with pymongo.timeout(self._conflict_budget):
                async with self._client.start_session() as session:
                    return await _guard(session.with_transaction(work))

    # -- the LogStore protocol ---------------------------------------------------------------------------

    async def append(
        self, entries: Sequence[bytes], *, dedupe_key: str | None = None, audit: bytes | None = None
    ) -> Appended:
        batch = check_append(entries, dedupe_key)

        async def work(session: AsyncClientSession) -> Appended:
            bookkeeping = await self._logs.find_one_and_update(
                {"_id": self.namespace},
                [{"$set": {"head": {"$add": ["$head", len(batch)]}, "committed": "$$NOW"}}],
                projection={"head": 1, "committed": 1},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            assert bookkeeping is not None  # created at open
            now_ms = int(bookkeeping["committed"])
            if dedupe_key is not None:
                seen = await self._keys.find_one(
                    {"_id": dedupe_key, "expires_at": {"$gt": DatetimeMS(now_ms)}}, session=session
                )
                if seen is not None:
                    await session.abort_transaction()  # nothing written; `with_transaction` returns this
                    return Appended(range(seen["first"], seen["first"] + seen["count"]), seen["t"], True)
            first = int(bookkeeping["head"]) - len(batch) + 1
            now = now_ms / 1000
            await self._entries.insert_many(
                [{"_id": Int64(first + i), "t": now, "d": data} for i, data in enumerate(batch)],
                session=session,
            )
            if audit is not None:
                await self._audit.insert_one({"_id": Int64(first), "entry": audit}, session=session)
            if dedupe_key is not None:  # replaces an expired key's document
                await self._keys.replace_one(
                    {"_id": dedupe_key},
                    {
                        "first": Int64(first),
                        "count": len(batch),
                        "t": now,
                        "expires_at": DatetimeMS(now_ms + self._dedupe_window_ms),
                    },
                    upsert=True,
                    session=session,
                )
            return Appended(range(first, first + len(batch)), now, duplicate=False)

        appended = await self._transact(work)
        self._wake_followers()
        return appended

    async def audit_journal(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        docs = await _guard(
            self._audit.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit).to_list(None)
        )
        return [(int(doc["_id"]), bytes(doc["entry"])) for doc in docs]

    async def _bookkeeping(self) -> tuple[int, int]:
        """(head, trimmed_through)."""
        doc = await _guard(self._logs.find_one({"_id": self.namespace}))
        if doc is None:
            return 0, 0
        return int(doc["head"]), int(doc["trimmed_through"])

    async def _entries_after(
        self, after: int | None, count: int, *, following: bool
    ) -> tuple[int, list[LogEntry]]:
        """Where the read starts (checked against the log) and up to `count` committed entries after it."""
        head, trimmed_through = await self._bookkeeping()
        start = start_position(after, head=head, trimmed_through=trimmed_through, following=following)
        query = {"_id": {"$gt": start, "$lte": head}}
        docs = await _guard(self._entries.find(query).sort("_id", 1).limit(count).to_list(None))
        # Entries are trimmed in the same transaction that moves `trimmed_through`: if it did not pass `start`
        # by now, nothing this read needed was missing.
        if start < (await self._bookkeeping())[1]:
            raise CursorExpired(f"cursor {start} was trimmed from the log while reading")
        entries = [LogEntry(int(doc["_id"]), doc["d"], doc["t"]) for doc in docs]
        check_contiguous(start, entries)
        return start, entries

    @contextlib.asynccontextmanager
    async def _waiting(self) -> AsyncIterator[Wait]:
        """A follower waits on a change stream of its own, closed when it ends; or polls where there are
        none. Its first wait only opens the stream: the follower then reads again, and no append committed
        after that read can go unnoticed."""
        wake = asyncio.Event()
        self._followers.add(wake)
        stream: AsyncChangeStream[_Doc] | None = None

        async def wait(position: int) -> list[LogEntry]:
            nonlocal stream
            if stream is None and self._change_streams:
                stream = await self._open_stream()
            elif stream is None:
                await woken_or_polled(wake, self._poll_interval)
            elif not await self._next_append(stream, position):
                await self._close_stream(stream)  # failed: reopened by the next wait
                stream = None
            return []

        try:
            yield wait
        finally:
            self._followers.discard(wake)
            await self._close_stream(stream)

    async def _open_stream(self) -> AsyncChangeStream[_Doc] | None:
        """A change stream of this namespace's bookkeeping document, or None where there are none."""
        mine = [{"$match": {"documentKey._id": self.namespace}}]
        try:
            stream = await _guard(self._logs.watch(mine, max_await_time_ms=_AWAIT_MS))
        except OperationFailure as exc:
            if exc.code not in _CHANGE_STREAMS_UNSUPPORTED:
                raise
            log.info("no change streams (%s); log followers poll every %ss", exc, self._poll_interval)
            self._change_streams = False
            return None
        self._streams.add(stream)  # so that `close` can end it
        return stream

    async def _next_append(self, stream: AsyncChangeStream[_Doc], position: int) -> bool:
        """Wait (up to _AWAIT_MS) for an event that may have moved the log past `position`; False if the
        stream failed. Events of appends already read are skipped without reading the log for them."""
        try:
            while (change := await stream.try_next()) is not None:
                head = change.get("updateDescription", {}).get("updatedFields", {}).get("head")
                if head is None or head > position:  # a trim, or an append past what was read
                    return True
        except PyMongoError as exc:
            log.debug("a log follower's change stream failed; reopening: %s", exc)
            return False
        return True  # nothing within _AWAIT_MS: read anyway

    async def head(self) -> str:
        return str((await self._bookkeeping())[0])

    async def trim(self, before_time: float) -> int:
        dropped = 0
        while True:  # in steps, so appends get their turn in between
            step = await self._transact(lambda session: self._trim_step(session, before_time))
            dropped += step
            if step < TRIM_BATCH:
                return dropped

    async def _trim_step(self, session: AsyncClientSession, before_time: float) -> int:
        """Drop up to TRIM_BATCH of the oldest entries committed before `before_time`."""
        doc = await self._logs.find_one({"_id": self.namespace}, session=session)
        assert doc is not None  # created at open
        head, trimmed_through = int(doc["head"]), int(doc["trimmed_through"])
        reach = min(head, trimmed_through + TRIM_BATCH)
        kept = await self._entries.find_one(
            {"_id": {"$gt": trimmed_through, "$lte": reach}, "t": {"$gte": before_time}},
            projection={"_id": 1},
            sort=[("_id", 1)],
            session=session,
        )
        cut = reach if kept is None else int(kept["_id"]) - 1
        if cut > trimmed_through:
            await self._logs.update_one(
                {"_id": self.namespace}, {"$set": {"trimmed_through": Int64(cut)}}, session=session
            )
            await self._entries.delete_many({"_id": {"$lte": cut}}, session=session)
        return cut - trimmed_through

    async def ping(self) -> None:
        if self._closed:
            raise StoreUnavailable("the mongodb log store is closed")
        await _guard(self._client.admin.command("ping"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_followers()  # followers then end with StoreUnavailable instead of waiting
        for stream in list(self._streams):  # ends their waits too; the server drops the cursors now
            await self._close_stream(stream)
        await self._client.close()

    async def _close_stream(self, stream: AsyncChangeStream[_Doc] | None) -> None:
        """Close a follower's change stream, waiting boundedly for the server to drop its cursor."""
        if stream is not None:
            self._streams.discard(stream)
            with contextlib.suppress(PyMongoError, TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await stream.close()

    def _wake_followers(self) -> None:
        for wake in self._followers:
            wake.set()


__all__ = ["MongoLog"]
