"""Data-subject requests (microstate.subjects.v1): export and erase one subject's data, on every microstate.

A slice plugs in by declaration: `Microstate.subjects` is a function from its opened stores to a
`SubjectData` — where the slice keeps a subject's data, as an export (records as JSON-able dicts) and an
erase. The runtime serves `SubjectService` from it next to the slice's own contract, under the scopes in
`SCOPES`; the slice adds `SERVICE_NAME` to its service names and `SCOPES` to its scope table. A slice that
keeps nothing about a subject declares `NOTHING`.

Erasing a keyed record goes through `erase_records`: the record is deleted (watchers see the deletion, so
SDK caches and snapshots drop it) and the store forgets its history (`forget`, which every backend has: the
older change-log entries, and on SQLite the bytes a deletion leaves in the file and its WAL).

EraseSubject is applied once per request id: a receipt (`<request digest>` → what was erased) is kept for
`RECEIPT_TTL` in the `receipts` store the runtime opens next to the slice's own, and a repeat answers it
again with `replayed` instead of erasing a second time — a coordinator resuming hours later cannot erase
what the subject created after its request. The receipt holds digests only, salted by the request id, never
the subject id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.server.errors import AlreadyExists, stream_errors, unary_errors
from microstate.server.kit import wire
from microstate.server.kit.limits import check_form
from microstate.server.store import open_store
from microstate.server.store.base import ABSENT, PreconditionFailed, Store
from microstate.server.store.roles import StoreKind, StoreRole, Stores
from microstate.subjects.v1 import subjects_pb2 as pb

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["SubjectService"]
SERVICE_NAME = SERVICE.full_name
SCOPES = {"ExportSubject": "gdpr.export", "EraseSubject": "gdpr.erase"}
"""What each method needs: merged into every slice's scope table."""
RECEIPTS = "receipts"
RECEIPTS_ROLE = StoreRole(RECEIPTS, StoreKind.RECORDS)
"""The store role (a records store in a namespace of its own) that erase receipts are kept in."""
RECEIPT_TTL = 90 * 24 * 3600.0
"""Seconds an erase receipt is kept: longer than any coordinator takes to resume (Art. 12(3): a month,
extendable by two)."""
SUBJECT_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,100}")


@dataclass(frozen=True, slots=True)
class Item:
    """One record held about a subject."""

    kind: str
    key: str
    data: Mapping[str, Any]
    """JSON-able."""


@dataclass(frozen=True, slots=True)
class Erased:
    count: int
    retained: tuple[tuple[str, str], ...] = ()
    """(kind, reason) of what is kept on purpose."""


class SubjectData(Protocol):
    """Where one slice keeps a subject's data."""

    def export(self, subject: str) -> AsyncIterator[Item]:
        """Every record held about `subject`."""
        ...

    async def erase(self, subject: str) -> Erased:
        """Erase what is held about `subject` (what is already gone counts nothing)."""
        ...


Declaration = Callable[[Stores], SubjectData]
"""`Microstate.subjects`: the slice's subject data over its opened stores."""


class _Nothing:
    async def export(self, subject: str) -> AsyncIterator[Item]:
        return
        yield  # an async generator that yields nothing

    async def erase(self, subject: str) -> Erased:
        return Erased(0)


def NOTHING(stores: Stores) -> SubjectData:
    """The declaration of a slice that keeps nothing about a subject."""
    return _Nothing()


@runtime_checkable
class Forgetting(Protocol):
    """A records store that can forget deleted keys' history: every backend (store/sqlite.py, redis.py,
    redis_cluster.py, mongo.py); a wrapper of a store must pass it on."""

    async def forget(self, keys: Sequence[str], *, keep_deletions: bool = True) -> None: ...


async def erase_records(store: Store, keys: Iterable[str], *, announced: bool = True) -> int:
    """Delete `keys` and have the store forget their history; how many existed. `announced`: the change
    log keeps each key's deletion, so watchers (SDK caches) drop it — the key itself (often the subject's
    id) then stays in the log until its retention trims it; pass False for keys no watcher needs to hear
    of (an index entry)."""
    if not isinstance(store, Forgetting):  # e.g. a wrapper that does not pass `forget` on: fail, not leak
        raise TypeError(f"{type(store).__name__} cannot forget history: an erase would leave it behind")
    doomed = list(dict.fromkeys(keys))
    erased = 0
    for key in doomed:
        erased += await store.delete(key)
    await store.forget(doomed, keep_deletions=announced)
    return erased


async def keys_with_prefix(store: Store, prefix: str) -> list[str]:
    """Every live key under `prefix`."""
    keys: list[str] = []
    after: str | None = None
    while True:
        page = await store.list(prefix, after=after, limit=500)
        keys.extend(record.key for record in page.records)
        if page.next_after is None:
            return keys
        after = page.next_after


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class _MemoryReceipts:
    """Receipts kept in memory, for a slice served without a receipts store (in-process tests)."""

    def __init__(self) -> None:
        self._receipts: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self._receipts.get(key)

    async def put_new(self, key: str, value: bytes) -> bytes | None:
        earlier = self._receipts.get(key)
        if earlier is None:
            self._receipts[key] = value
        return earlier


class _StoredReceipts:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str) -> bytes | None:
        record = await self._store.get(key)
        return None if record is None else record.value

    async def put_new(self, key: str, value: bytes) -> bytes | None:
        """Keep `value` unless a receipt is there already; that one, or None."""
        try:
            await self._store.put(key, value, if_match=ABSENT, ttl=RECEIPT_TTL)
        except PreconditionFailed as failed:
            return None if failed.current is None else failed.current.value
        return None


class SubjectServicer:
    """Implements SubjectService for one microstate over its SubjectData."""

    def __init__(self, microstate: str, data: SubjectData, receipts: Store | None) -> None:
        self._microstate = microstate
        self._data = data
        self._receipts = _MemoryReceipts() if receipts is None else _StoredReceipts(receipts)

    @stream_errors
    async def ExportSubject(
        self, request: pb.ExportSubjectRequest, context: Context
    ) -> AsyncIterator[pb.SubjectRecord]:
        check_form(request.subject_id, SUBJECT_ID, "subject_id", "1 to 256 characters, no control characters")
        async for item in self._data.export(request.subject_id):
            text = json.dumps(item.data, sort_keys=True, ensure_ascii=False, default=str)
            yield pb.SubjectRecord(microstate=self._microstate, kind=item.kind, key=item.key, json=text)

    @unary_errors
    async def EraseSubject(
        self, request: pb.EraseSubjectRequest, context: Context
    ) -> pb.EraseSubjectResponse:
        subject, request_id = request.subject_id, request.request_id
        check_form(subject, SUBJECT_ID, "subject_id", "1 to 256 characters, no control characters")
        check_form(request_id, REQUEST_ID, "request_id", "1 to 100 printable ASCII characters, no spaces")
        key, owner = _digest("erase request", request_id), _digest("erase subject", request_id, subject)
        receipt = await self._receipts.get(key)
        if receipt is None:
            erased = await self._data.erase(subject)
            receipt = json.dumps(
                {"owner": owner, "count": erased.count, "retained": erased.retained}
            ).encode()
            earlier = await self._receipts.put_new(key, receipt)
            if earlier is None:
                return self._response(erased, replayed=False)
            receipt = earlier  # a concurrent repeat carried it out first
        kept = json.loads(receipt)
        if kept["owner"] != owner:
            raise AlreadyExists(
                "request_id was used for another erasure",
                reason="REQUEST_ID_ALREADY_USED",
                metadata={"request_id": request_id},
            )
        retained = tuple((kind, reason) for kind, reason in kept["retained"])
        return self._response(Erased(kept["count"], retained), replayed=True)

    def _response(self, erased: Erased, *, replayed: bool) -> pb.EraseSubjectResponse:
        return pb.EraseSubjectResponse(
            microstate=self._microstate,
            erased_count=erased.count,
            retained=[pb.Retained(kind=kind, reason=reason) for kind, reason in erased.retained],
            replayed=replayed,
        )


async def with_receipts(stores: Stores, microstate: str, primary_url: str) -> Stores:
    """`stores` and the receipts store: namespace `<microstate>.receipts` in the primary records store's
    backend (its own namespace, so a slice's list never meets a receipt). Closes `stores` on a failure."""
    try:
        receipts = await open_store(primary_url, f"{microstate}.{RECEIPTS}")
    except BaseException:
        await stores.close()
        raise
    return stores.with_role(RECEIPTS_ROLE, receipts)


def attach(server: grpc.aio.Server, microstate: str, declaration: Declaration, stores: Stores) -> None:
    """Serve SubjectService for `microstate`; its receipts go to the `receipts` store when it has one."""
    receipts = stores.records(RECEIPTS) if stores.has(RECEIPTS) else None
    wire.add_service(server, SERVICE, SubjectServicer(microstate, declaration(stores), receipts))
