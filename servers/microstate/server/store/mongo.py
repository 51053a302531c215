"""The MongoDB store: PyMongo's native async client (`AsyncMongoClient`), one transaction per write.

Layout, in the URL's database (default ``microstate``), for namespace ``ns``:

- ``records.<ns>`` — one document per record: ``_id`` (the key), ``value``, ``revision``, ``expires_at`` (a
  BSON date, or null). A TTL index on ``expires_at`` lets the server evict expired records by itself; reads
  never rely on it (it runs about once a minute) and treat ``expires_at <= now`` as absent.
- ``changes.<ns>`` — the change log: ``_id`` is the change's revision, plus kind, key, value, expiry, time.
- ``microstate_namespaces`` — one document per namespace: ``head`` (the last revision) and ``trimmed_through``
  (log entries up to it may be gone).

Writes: each put/delete is ONE multi-document transaction that bumps ``head``, writes the record with a
FILTERED update (``_id`` + ``revision`` + "live" for an etag, "absent or expired" + upsert for a create, a
DuplicateKeyError meaning somebody else created it) and appends the change. Every write touches the
``head`` document, so concurrent writers conflict (WriteConflict, retried with backoff for up to
``conflict_budget`` seconds) instead of interleaving: revision order is commit order, the log has no holes and
an aborted write leaves no trace. The price: one namespace commits one write at a time (as SQLite and the
Redis scripts do), about one transaction latency each. Writes of one store object are queued behind an asyncio
lock, which avoids conflicts within one process, and a conditional write first checks its precondition with
one read once its turn comes, so the losers of a race cost a read, not an aborted transaction (the filtered
update inside the transaction stays the real check). Transactions need a replica set (or mongos); a
standalone mongod is refused (StoreMisconfigured) with a clear error: run it as a one-member replica set.

Watch: the primary source is the change log, not change-stream resume tokens. The log is written in the same
transaction as the record, so a cursor (the revision, as a decimal string) resumes exactly, without gaps or
duplicates, for as long as the log retains it (``retention`` entries; older is CursorExpired). Change-stream
tokens would bind resumability to the oplog window instead of ``retention``, would report the TTL monitor's
deletions (expiry is not a change here) and could not tell "created over an expired record" from "updated".
Change streams are used for what they are best at, latency: one stream per store on ``changes.<ns>`` wakes
the watchers as soon as another process commits. Where change streams are unavailable (Amazon DocumentDB
without them enabled, a server advertising itself as standalone, ``change_streams=False``) watchers poll the
log every ``poll_interval`` seconds instead; writes of this store object wake its watchers at once either way.

Failure policy: open does not contact the server, which may come up later; the first ping or write creates
the namespace's collections, index and bookkeeping once it answers. Credentials the server refuses, and a
server without transactions, are StoreMisconfigured: retrying cannot help. An unreachable server is reported
as StoreUnavailable within ``serverSelectionTimeoutMS`` (default 2 s here, not PyMongo's 30 s). PyMongo
retries a read or a commit once on a network error and reconnects by itself once the server is back, so the
same store object recovers. A write whose commit reply was lost raises StoreUnavailable and may have
committed. `watch` hides outages shorter than ``watch_outage_budget`` (retrying with backoff and resuming
from its last cursor); a longer one ends the iteration with StoreUnavailable and the caller resumes with its
last cursor.

Write concern is ``majority`` unless the URL sets ``w=`` (``durable`` is declared only for ``majority`` or
``journal=true``). The read preference of the URL applies to get, batch_get and list, so a secondary may
answer with a slightly stale record; bookkeeping, watch and precondition reads always go to the primary, so
compare-and-set stays exact whatever the read preference.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

from bson import Int64
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from pymongo import AsyncMongoClient, ReadPreference, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.common import URI_OPTIONS_VALIDATOR_MAP
from pymongo.errors import (
    CollectionInvalid,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)
from pymongo.write_concern import WriteConcern

from microstate.server.cancellation import end_if_cancelled
from microstate.server.store._shared import Outage, backoff, check_ttl, guard, prefix_end, require_positive
from microstate.server.store._url_settings import settings_from_url
from microstate.server.store.base import (
    ABSENT,
    Capabilities,
    Change,
    ChangeKind,
    CursorExpired,
    IfMatch,
    InvalidCursor,
    Page,
    PreconditionFailed,
    Record,
    StoreMisconfigured,
    StoreUnavailable,
    check_namespace,
    expected_revision,
    require_precondition,
)

log = logging.getLogger(__name__)

DEFAULT_DATABASE: Final = "microstate"
DEFAULT_RETENTION: Final = 100_000
"""Change-log entries kept per namespace; a watch cursor older than that is CursorExpired."""
DEFAULT_POLL_INTERVAL: Final = 0.5
"""Seconds between change-log polls of a watch (a safety net where change streams wake it earlier)."""
DEFAULT_WATCH_OUTAGE_BUDGET: Final = 30.0
"""Seconds a watch keeps retrying through an outage before it raises StoreUnavailable."""
DEFAULT_CONFLICT_BUDGET: Final = 5.0
"""Seconds a write keeps retrying transactions that lost a write conflict to another process."""
CLIENT_DEFAULTS: Final[Mapping[str, int]] = {
    # PyMongo waits 30 s for a server by default; a request deadline is shorter than that.
    "serverSelectionTimeoutMS": 2_000,
    "connectTimeoutMS": 2_000,
    # A server that accepts a request but never answers must not hang a call forever.
    "socketTimeoutMS": 10_000,
}
"""Client options applied unless the URL sets them (URL options win)."""

_CURSOR = re.compile(r"0|[1-9][0-9]{0,18}")
_NAMESPACES_COLLECTION = "microstate_namespaces"
_WATCH_BATCH = 256
_TRIM_EVERY = 64
"""Log entries older than the retention are deleted in batches, every this many writes."""
_CODEC: Final[CodecOptions[dict[str, Any]]] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_MS)
# Errors that mean "the server is not usable right now" (shutting down, stepping down, out of time).
_UNAVAILABLE_CODES = frozenset({6, 7, 50, 64, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
_CHANGE_STREAMS_UNSUPPORTED = frozenset({40573, 115, 303})  # not a replica set; not supported; not enabled
# IllegalOperation: "Transaction numbers are only allowed on a replica set member or mongos".
_NO_TRANSACTIONS = frozenset({20})
# Unauthorized (no or too few privileges), AuthenticationFailed, and Atlas's code for a failed login.
_REFUSED_CODES = frozenset({13, 18, 8000})
_CLOSE_TIMEOUT: Final = 2.0
"""Seconds `close` waits for the change stream to be closed on the server before it abandons it."""
_INSERTS: Final = [{"$match": {"operationType": "insert"}}]
_AWAIT_MS: Final = 1_000
"""How long one getMore of the change stream waits on the server: explicit, because a server that waits
indefinitely would also hold up closing the stream."""

_T = TypeVar("_T")
_Doc = dict[str, Any]


class _Conflict(Exception):
    """`if_match` did not hold inside the transaction; the caller reads the current record after the abort."""


def _unavailable(exc: Exception) -> StoreUnavailable | None:
    """The StoreUnavailable an error stands for, or None if it is not an availability problem."""
    if not isinstance(exc, PyMongoError):
        return None
    if isinstance(exc, OperationFailure) and exc.code in _REFUSED_CODES:
        reason = (exc.details or {}).get("errmsg", str(exc))
        return StoreMisconfigured(f"mongodb refused the store URL's credentials: {reason} (code {exc.code})")
    if isinstance(exc, ConfigurationError):  # e.g. a mongodb+srv:// name DNS does not know (resolved lazily)
        return StoreMisconfigured(f"mongodb: the store URL cannot be used: {exc}")
    transient = exc.has_error_label("TransientTransactionError") or exc.has_error_label("RetryableWriteError")
    code = exc.code if isinstance(exc, OperationFailure) else None
    if isinstance(exc, ConnectionFailure | WTimeoutError) or transient or code in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"mongodb: {type(exc).__name__}: {exc}")
    if isinstance(exc, InvalidOperation):  # the client was closed
        return StoreUnavailable(f"mongodb store is closed: {exc}")
    return None


async def _guard(call: Awaitable[_T]) -> _T:
    """Await a PyMongo call, turning availability errors into StoreUnavailable (chained)."""
    return await guard(call, _unavailable)


def _is_write_conflict(exc: PyMongoError) -> bool:
    """A transaction that lost a race with another one: safe to run again from the start."""
    return exc.has_error_label("TransientTransactionError") and not isinstance(exc, ConnectionFailure)


def _parse_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise InvalidCursor(f"not a cursor of a MongoDB store: {cursor!r}")
    return int(cursor)


def _pymongo_takes(_url: str, key: str) -> bool:
    """Whether PyMongo knows the URI option `key` (it only warns about one it does not, then ignores it)."""
    return key.lower() in URI_OPTIONS_VALIDATOR_MAP


def _query_options(url: str) -> set[str]:
    """The option names a mongodb:// URL sets, lower-cased (URI options are case-insensitive)."""
    return {name.lower() for name, _ in parse_qsl(urlsplit(url).query)}


def connect(
    url: str, appname: str, client_options: Mapping[str, Any]
) -> tuple[AsyncMongoClient[_Doc], WriteConcern, str]:
    """A client for `url`, the write concern to use and the name of the database the URL names.

    `client_options` go to AsyncMongoClient and win over the URL; CLIENT_DEFAULTS apply to options neither
    sets. The write concern is ``majority`` unless the URL or `client_options` set ``w``.
    """
    given = _query_options(url) | {name.lower() for name in client_options}
    defaults: dict[str, Any] = {**CLIENT_DEFAULTS, "appname": appname}
    unset = {name: value for name, value in defaults.items() if name.lower() not in given}
    try:
        client: AsyncMongoClient[_Doc] = AsyncMongoClient(url, **unset, **client_options)
    except ConfigurationError as exc:  # InvalidURI too
        raise ValueError(f"bad MongoDB store URL: {exc}") from None
    write_concern = client.write_concern if "w" in given else WriteConcern(w="majority")
    return client, write_concern, client.get_default_database(DEFAULT_DATABASE).name


async def create_collections(*collections: AsyncCollection[_Doc]) -> None:
    """Create the collections that do not exist yet (explicitly, because older servers cannot create a
    collection inside a transaction); safe to race with other processes."""
    for collection in collections:
        try:
            await _guard(collection.database.create_collection(collection.name))
        except CollectionInvalid:
            pass  # it exists (maybe another process created it just now)
        except OperationFailure as exc:
            if exc.code != 48:  # NamespaceExists
                raise


async def create_bookkeeping(
    transact: Callable[[Callable[[AsyncClientSession], Awaitable[None]]], Awaitable[None]],
    collection: AsyncCollection[_Doc],
    name: str,
) -> None:
    """Create the bookkeeping document of namespace `name` (head and trimmed_through 0) unless it exists, in
    a transaction run by `transact`: that proves the server runs transactions (StoreError if it cannot)."""

    async def create(session: AsyncClientSession) -> None:
        with contextlib.suppress(DuplicateKeyError):  # another process created it at the same moment
            await collection.update_one(
                {"_id": name},
                {"$setOnInsert": {"head": Int64(0), "trimmed_through": Int64(0)}},
                upsert=True,
                session=session,
            )

    async with requiring_transactions():
        await transact(create)


def is_durable(write_concern: WriteConcern) -> bool:
    """Acknowledged writes survive a failover: ``w=majority`` or a journaled write."""
    return write_concern.document.get("w") == "majority" or bool(write_concern.document.get("j"))


@contextlib.asynccontextmanager
async def requiring_transactions() -> AsyncIterator[None]:
    """Around a store's first transaction: a server without transactions becomes a StoreError saying why."""
    try:
        yield
    except OperationFailure as exc:
        if exc.code in _NO_TRANSACTIONS:
            raise StoreMisconfigured(
                "MongoDB stores need transactions, which a standalone mongod does not offer: run it as a"
                " replica set (a one-member set is fine: mongod --replSet rs0, then rs.initiate())"
            ) from exc
        raise


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _live(now_ms: int) -> _Doc:
    """Filter: the record has not expired (null means it never does)."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": DatetimeMS(now_ms)}}]}


def _key_range(prefix: str) -> _Doc:
    """Bounds on a string field for keys starting with `prefix`: an index range, no regex to escape.

    MongoDB compares strings as UTF-8 bytes without a collation, which is code-point order, as `prefix_end`.
    """
    bounds: _Doc = {"$gte": prefix}
    end = prefix_end(prefix)
    if end is not None:
        bounds["$lt"] = end
    return bounds


def _expiry(raw: DatetimeMS | None) -> float | None:
    return None if raw is None else int(raw) / 1000


def _record(doc: _Doc) -> Record:
    return Record(
        key=doc["_id"], value=doc["value"], revision=doc["revision"], expires_at=_expiry(doc["expires_at"])
    )


def _change(doc: _Doc) -> Change:
    kind = ChangeKind(doc["kind"])
    record = None
    if kind is not ChangeKind.DELETED:
        record = Record(
            key=doc["key"], value=doc["value"], revision=doc["_id"], expires_at=_expiry(doc["expires_at"])
        )
    return Change(
        kind=kind, key=doc["key"], record=record, cursor=str(doc["_id"]), commit_time=doc["commit_time"]
    )


@dataclass(frozen=True, slots=True)
class _Bookkeeping:
    head: int
    trimmed_through: int


class MongoStore:
    """A Store on MongoDB (see the module docstring for layout, atomicity, watch and failure policy)."""

    def __init__(
        self,
        client: AsyncMongoClient[_Doc],
        namespace: str,
        *,
        database: str,
        write_concern: WriteConcern,
        retention: int,
        poll_interval: float,
        change_streams: bool,
        watch_outage_budget: float,
        conflict_budget: float,
    ) -> None:
        self._client = client
        self.namespace = namespace
        db = client.get_database(database, codec_options=_CODEC, write_concern=write_concern)
        primary = client.get_database(
            database,
            codec_options=_CODEC,
            write_concern=write_concern,
            read_preference=ReadPreference.PRIMARY,
        )
        self._records = db[f"records.{namespace}"]
        """For get, batch_get and list: the read preference of the URL."""
        self._primary_records = primary[f"records.{namespace}"]
        self._changes = primary[f"changes.{namespace}"]
        self._audit = primary[f"audit.{namespace}"]
        self._namespaces = primary[_NAMESPACES_COLLECTION]
        self._write_concern = write_concern
        self.retention = retention
        self._poll_interval = poll_interval
        self._change_streams = change_streams
        self._watch_outage_budget = watch_outage_budget
        self._conflict_budget = conflict_budget
        self.capabilities = Capabilities(durable=is_durable(write_concern), shared=True, native_ttl=True)
        self._write_lock = asyncio.Lock()
        self._watchers: set[asyncio.Event] = set()
        self._notifier: asyncio.Task[None] | None = None
        self._prepared = False
        """The namespace's collections, index and bookkeeping exist (see `_prepare`)."""
        self._prepare_lock = asyncio.Lock()
        self._closed = False

    @property
    def uses_change_streams(self) -> bool:
        """False once the server turned change streams down (or they were disabled): watchers poll the log."""
        return self._change_streams

    @classmethod
    @settings_from_url("PyMongo", _pymongo_takes)
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        retention: int = DEFAULT_RETENTION,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        change_streams: bool = True,
        watch_outage_budget: float = DEFAULT_WATCH_OUTAGE_BUDGET,
        conflict_budget: float = DEFAULT_CONFLICT_BUDGET,
        **client_options: Any,
    ) -> MongoStore:
        """Open `namespace` in the database of `url` (``mongodb://`` or ``mongodb+srv://``). Does not contact
        the server: the first ping or write creates the collections and indexes (see `_prepare`). A malformed
        URL raises ValueError.

        The keyword settings may also come from the URL's query, next to PyMongo's own URI options
        (`?replicaSet=rs0&retention=10000`, see _url_settings.py); a key that is neither is refused.
        `client_options` go to AsyncMongoClient and win over the URL (PyMongo's rule); CLIENT_DEFAULTS apply
        to options that neither sets.
        """
        check_namespace(namespace)
        require_positive(retention=retention, poll_interval=poll_interval)
        client, write_concern, database = connect(url, f"microstate-{namespace}", client_options)
        return cls(
            client,
            namespace,
            database=database,
            write_concern=write_concern,
            retention=retention,
            poll_interval=poll_interval,
            change_streams=change_streams,
            watch_outage_budget=watch_outage_budget,
            conflict_budget=conflict_budget,
        )

    async def _prepare(self) -> None:
        """Create the namespace's collections, TTL index and bookkeeping, once per store object (idempotent,
        safe to race with other processes). Reads need none of it: a missing collection reads as empty."""
        if self._prepared:
            return
        async with self._prepare_lock:
            if self._prepared:
                return
            await create_collections(self._records, self._changes, self._audit, self._namespaces)
            index = self._records.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=0)
            await _guard(index)
            await create_bookkeeping(self._transact, self._namespaces, self.namespace)
            self._prepared = True

    # -- writes ------------------------------------------------------------------------------------------

    async def _write(
        self, work: Callable[[AsyncClientSession], Awaitable[_T]], *, key: str = "", if_match: IfMatch = None
    ) -> _T:
        """Run `work` in one transaction, after this store's earlier writes, retrying lost write conflicts.

        With `if_match`, first fail fast if it does not hold (see `_require`): checked once this write's turn
        has come, so writes queued behind the lock don't check against a record that is about to change.
        Shielded: a cancelled caller does not abandon a transaction half-way; it still commits or aborts in
        the background (a cancelled caller waiting for the lock just leaves the queue).
        """
        await self._prepare()
        async with self._write_lock:
            if if_match is not None:
                await self._require(key, if_match)
            task = asyncio.ensure_future(self._transact(work))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())  # no "never retrieved"
            result = await asyncio.shield(task)
        self._wake_watchers()
        return result

    async def _transact(self, work: Callable[[AsyncClientSession], Awaitable[_T]]) -> _T:
        deadline = time.monotonic() + self._conflict_budget
        attempt = 0
        while True:
            try:
                async with (
                    self._client.start_session() as session,
                    await session.start_transaction(
                        write_concern=self._write_concern, read_preference=ReadPreference.PRIMARY
                    ),
                ):
                    return await work(session)
            except PyMongoError as exc:
                if _is_write_conflict(exc) and time.monotonic() < deadline:
                    attempt += 1
                    await asyncio.sleep(backoff(attempt))  # before running the lost transaction again
                    continue
                if self._closed:
                    raise StoreUnavailable("the mongodb store is closed") from exc
                unavailable = _unavailable(exc)
                if unavailable is None:
                    raise
                raise unavailable from exc

    async def _next_revision(self, session: AsyncClientSession) -> int:
        """Take the next revision, and move the retention window of the log along with it."""
        bookkeeping = await self._namespaces.find_one_and_update(
            {"_id": self.namespace},
            [
                {"$set": {"head": {"$add": [{"$ifNull": ["$head", Int64(0)]}, 1]}}},
                {
                    "$set": {
                        "trimmed_through": {
                            "$max": [
                                {"$ifNull": ["$trimmed_through", Int64(0)]},
                                {"$subtract": ["$head", self.retention]},
                            ]
                        }
                    }
                },
            ],
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert bookkeeping is not None  # upserted
        revision, trimmed_through = int(bookkeeping["head"]), int(bookkeeping["trimmed_through"])
        if trimmed_through > 0 and revision % _TRIM_EVERY == 0:
            await self._changes.delete_many({"_id": {"$lte": trimmed_through}}, session=session)
        return revision

    async def _log(
        self, session: AsyncClientSession, revision: int, kind: ChangeKind, key: str, value: bytes | None,
        expires_at: DatetimeMS | None, now: float,
    ) -> None:  # fmt: skip
        await self._changes.insert_one(
            {
                "_id": Int64(revision),
                "kind": kind.value,
                "key": key,
                "value": value,
                "expires_at": expires_at,
                "commit_time": now,
            },
            session=session,
        )

    async def _current(self, key: str) -> Record | None:
        """The live record as the primary has it now (for preconditions: never a stale secondary)."""
        doc = await _guard(self._primary_records.find_one({"_id": key, **_live(_now_ms())}))
        return None if doc is None else _record(doc)

    async def _require(self, key: str, if_match: IfMatch) -> None:
        """Fail fast, without a transaction, when `if_match` does not hold now; the transaction still checks
        it again atomically. Losers of a race then cost one read instead of an aborted transaction."""
        require_precondition(key, if_match, await self._current(key))

    async def _journal(self, session: AsyncClientSession, revision: int, audit: bytes | None) -> None:
        if audit is not None:
            await self._audit.insert_one({"_id": Int64(revision), "entry": audit}, session=session)

    async def audit_journal(self, after: int, limit: int) -> builtins.list[tuple[int, bytes]]:
        docs = await _guard(
            self._audit.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit).to_list(None)
        )
        return [(int(doc["_id"]), bytes(doc["entry"])) for doc in docs]

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

        async def work(session: AsyncClientSession) -> Record:
            now = time.time()
            now_ms = int(now * 1000)
            revision = await self._next_revision(session)
            # Whole milliseconds, BSON's date precision, so the returned record equals what get() reads back.
            expires_ms = None if ttl is None else math.ceil((now + ttl) * 1000)
            expires_at = None if expires_ms is None else DatetimeMS(expires_ms)
            fields = {"value": value, "revision": Int64(revision), "expires_at": expires_at}
            kind = await self._write_record(session, key, fields, if_match, now_ms)
            await self._log(session, revision, kind, key, value, expires_at, now)
            await self._journal(session, revision, audit)
            return Record(key=key, value=value, revision=revision, expires_at=_expiry(expires_at))

        try:
            return await self._write(work, key=key, if_match=if_match)
        except _Conflict:
            raise PreconditionFailed(key, await self._current(key)) from None

    async def _write_record(
        self, session: AsyncClientSession, key: str, fields: _Doc, if_match: IfMatch, now_ms: int
    ) -> ChangeKind:
        """Write the record if `if_match` holds (else raise _Conflict); whether it was created or updated."""
        if if_match is None:
            before = await self._records.find_one_and_update(
                {"_id": key}, {"$set": fields}, projection={"expires_at": 1}, upsert=True, session=session
            )
            expired = before is not None and not _is_live(before, now_ms)
            return ChangeKind.CREATED if before is None or expired else ChangeKind.UPDATED
        if if_match is ABSENT:
            try:
                # Matches only an expired leftover; otherwise the upsert inserts, and a live record makes
                # that insert a duplicate key: the create lost.
                await self._records.update_one(
                    {"_id": key, "expires_at": {"$lte": DatetimeMS(now_ms)}},
                    {"$set": fields},
                    upsert=True,
                    session=session,
                )
            except DuplicateKeyError:
                raise _Conflict from None
            return ChangeKind.CREATED
        match = {"_id": key, "revision": expected_revision(if_match), **_live(now_ms)}
        result = await self._records.update_one(match, {"$set": fields}, session=session)
        if result.matched_count == 0:
            raise _Conflict
        return ChangeKind.UPDATED

    async def forget(self, keys: Sequence[str], *, keep_deletions: bool = True) -> None:
        """Remove the change-log entries of `keys` — but their deletions with `keep_deletions`, so watchers
        still learn that the keys went (a watch reads the log by revision range: a removed entry is no gap).
        Meant for keys just deleted. The storage engine may keep the removed bytes in free space until it
        reuses or compacts it (SECURITY.md)."""
        query: _Doc = {"key": {"$in": list(keys)}}
        if keep_deletions:
            query["kind"] = {"$ne": ChangeKind.DELETED.value}
        await _guard(self._changes.delete_many(query))

    async def delete(self, key: str, *, if_match: IfMatch = None, audit: bytes | None = None) -> bool:
        if if_match is ABSENT:  # nothing to write: only "is it absent now?"
            await self._require(key, ABSENT)
            return False

        async def work(session: AsyncClientSession) -> bool:
            now = time.time()
            match: _Doc = {"_id": key, **_live(int(now * 1000))}
            if if_match is not None:
                match["revision"] = expected_revision(if_match)
            deleted = await self._records.find_one_and_delete(match, projection={"_id": 1}, session=session)
            if deleted is None:
                if if_match is None:
                    return False
                raise _Conflict
            revision = await self._next_revision(session)
            await self._log(session, revision, ChangeKind.DELETED, key, None, None, now)
            await self._journal(session, revision, audit)
            return True

        try:
            return await self._write(work, key=key, if_match=if_match)
        except _Conflict:
            raise PreconditionFailed(key, await self._current(key)) from None

    # -- reads -------------------------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        doc = await _guard(self._records.find_one({"_id": key, **_live(_now_ms())}))
        return None if doc is None else _record(doc)

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return {}
        cursor = self._records.find({"_id": {"$in": unique}, **_live(_now_ms())})
        return {doc["_id"]: _record(doc) for doc in await _guard(cursor.to_list(None))}

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> Page:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        keys = _key_range(prefix)
        if after is not None:
            keys["$gt"] = after
        # One more than asked, to know whether another page exists without returning an empty last page.
        cursor = self._records.find({"_id": keys, **_live(_now_ms())}).sort("_id", 1).limit(limit + 1)
        docs = await _guard(cursor.to_list(None))
        records = [_record(doc) for doc in docs[:limit]]
        return Page(records=records, next_after=records[-1].key if len(docs) > limit else None)

    async def _bookkeeping(self) -> _Bookkeeping:
        doc = await _guard(self._namespaces.find_one({"_id": self.namespace}))
        if doc is None:
            return _Bookkeeping(0, 0)
        return _Bookkeeping(int(doc["head"]), int(doc["trimmed_through"]))

    async def head_cursor(self) -> str:
        return str((await self._bookkeeping()).head)

    async def ping(self) -> None:
        if self._closed:
            raise StoreUnavailable("the mongodb store is closed")
        await self._prepare()  # a ping alone needs no credentials: this proves them, and transactions
        await _guard(self._client.admin.command("ping"))

    # -- watch -------------------------------------------------------------------------------------------

    async def watch(self, prefix: str = "", *, after: str | None = None) -> AsyncGenerator[Change, None]:
        """Changes strictly after `after` (None: after the head at the first iteration), in commit order,
        filtered by prefix.

        Raises InvalidCursor for a malformed cursor or one ahead of the log, and CursorExpired when the log no
        longer holds the changes after the cursor (trimmed; or, mid-stream, the log went back: data lost in a
        rollback or a restore).
        """
        position = None if after is None else _parse_cursor(after)
        checked = False  # the caller's cursor has not been compared with the log yet
        wake = asyncio.Event()
        self._watchers.add(wake)
        self._start_notifier()
        outage = Outage(self._watch_outage_budget)
        try:
            while True:
                end_if_cancelled()
                if self._closed:
                    raise StoreUnavailable("the mongodb store is closed")
                wake.clear()  # before reading, so a commit during the read still wakes the next wait
                try:
                    if position is None:
                        position = (await self._bookkeeping()).head
                    head, docs = await self._read_changes(position, prefix, checked=checked)
                except StoreUnavailable as exc:
                    await outage.retry_or_raise(exc)
                    continue
                outage.reset()
                checked = True
                for doc in docs:
                    position = int(doc["_id"])
                    yield _change(doc)
                if len(docs) == _WATCH_BATCH:
                    continue
                # Nothing matching up to `head` was left unread, so later reads can start there.
                position = max(position, head)
                try:
                    async with asyncio.timeout(self._poll_interval):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            self._watchers.discard(wake)

    async def _read_changes(
        self, position: int, prefix: str, *, checked: bool
    ) -> tuple[int, builtins.list[_Doc]]:
        """Log entries after `position` up to the head read first (all committed: head and entry are one
        transaction), and that head."""
        before = await self._bookkeeping()
        if position > before.head:
            ahead = f"cursor {position} is ahead of this store's log (head {before.head})"
            raise CursorExpired(ahead) if checked else InvalidCursor(ahead)
        if position < before.trimmed_through:
            raise CursorExpired(f"cursor {position} is older than the retained change log")
        query: _Doc = {"_id": {"$gt": position, "$lte": before.head}}
        if prefix:
            query["key"] = _key_range(prefix)
        docs = await _guard(self._changes.find(query).sort("_id", 1).limit(_WATCH_BATCH).to_list(None))
        # Entries are trimmed only after `trimmed_through` has moved past them: if it did not pass `position`
        # by now, nothing this read needed was missing.
        if position < (await self._bookkeeping()).trimmed_through:
            raise CursorExpired(f"cursor {position} was trimmed from the change log while reading")
        return before.head, docs

    def _start_notifier(self) -> None:
        if self._change_streams and self._notifier is None and not self._closed:
            self._notifier = asyncio.create_task(self._notify_from_change_stream())

    async def _notify_from_change_stream(self) -> None:
        """Wake the watchers whenever a change is committed, by anyone, while a change stream is available."""
        failures = 0
        while not self._closed:
            try:
                async with await self._changes.watch(_INSERTS, max_await_time_ms=_AWAIT_MS) as stream:
                    failures = 0
                    self._wake_watchers()  # whatever was committed while the stream was down is read now
                    # try_next, not `async for`: it returns after each empty getMore, so the loop sees a
                    # close even if PyMongo swallowed the cancellation (seen while a getMore was being sent).
                    while stream.alive and not self._closed:
                        if await stream.try_next() is not None:
                            self._wake_watchers()
            except OperationFailure as exc:
                if exc.code in _CHANGE_STREAMS_UNSUPPORTED:
                    log.info(
                        "change streams unavailable (%s); watchers poll every %ss", exc, self._poll_interval
                    )
                    self._change_streams = False
                    return
                log.warning("change stream failed; reopening: %s", exc)
            except PyMongoError as exc:
                log.debug("change stream interrupted; reopening: %s", exc)
            failures += 1
            await asyncio.sleep(backoff(failures, base=0.05))  # backoff before reopening the stream

    def _wake_watchers(self) -> None:
        for wake in self._watchers:
            wake.set()

    async def close(self) -> None:
        self._closed = True
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.cancel()  # closing its change stream kills the server cursor: wait boundedly
            _, pending = await asyncio.wait({notifier}, timeout=_CLOSE_TIMEOUT)
            if pending:
                log.warning("the change stream did not close within %ss; abandoning it", _CLOSE_TIMEOUT)
        self._wake_watchers()  # watchers then end with StoreUnavailable instead of polling forever
        await self._client.close()


def _is_live(doc: _Doc, now_ms: int) -> bool:
    expires_at = doc.get("expires_at")
    return expires_at is None or int(expires_at) > now_ms


__all__ = [
    "CLIENT_DEFAULTS",
    "DEFAULT_CONFLICT_BUDGET",
    "DEFAULT_DATABASE",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RETENTION",
    "DEFAULT_WATCH_OUTAGE_BUDGET",
    "MongoStore",
    "connect",
    "create_bookkeeping",
    "create_collections",
    "is_durable",
    "requiring_transactions",
]
