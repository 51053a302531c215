"""A records store whose writes carry their audit entry into the backend's atomic write.

`AuditedStore` forwards everything to the store it wraps; a `put` or `delete` made inside an audited call
(calls.py) passes `audit=<encoded Entry>` to the backend, which appends it to the namespace's audit
journal in the same transaction as the write (SQLite: the same transaction; Redis: the same Lua script;
MongoDB: the same transaction). So no acknowledged write lacks its entry, and a journal that cannot be
written fails the write. The journal is sealed into the ledger (HMAC chain, Merkle tree, checkpoints) in
the background by `ledger.Sealer`.

Appends to a log store (telemetry's events) are audited the same way, one entry per append (`AuditedLog`).

Writes outside an audited call (a server's own background upkeep: telemetry's fold, expiry sweeps) are
derived state, not a caller's change, and are not audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from microstate.server.audit.calls import AuditCall, current_call
from microstate.server.audit.entries import (
    ABSENT_DIGEST,
    UNKNOWN_DIGEST,
    Entry,
    digest,
    encode_fields,
    subject_ref,
)
from microstate.server.store.base import ABSENT, IfMatch, Record, Store

SubjectOf = Callable[[str], str | None]
"""A slice's declaration: the data subject id a record key concerns (e.g. a profile's user id), or None."""


class AuditedStore:
    """`store`, its writes inside an audited call audited. Only backends that take `audit=` can be wrapped
    (every records backend of store/ does)."""

    def __init__(self, store: Store, subject_key: bytes, subject_of: SubjectOf | None = None) -> None:
        self.inner = store
        self.capabilities = store.capabilities
        self._subject_key = subject_key
        self._subject_of = subject_of

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, key: str) -> Record | None:
        record = await self.inner.get(key)
        call = current_call()
        if call is not None and record is not None:
            call.seen[key] = record
        return record

    async def batch_get(self, keys: Sequence[str]) -> dict[str, Record]:
        records = await self.inner.batch_get(keys)
        call = current_call()
        if call is not None:
            call.seen.update(records)
        return records

    async def put(
        self, key: str, value: bytes, *, if_match: IfMatch = None, ttl: float | None = None
    ) -> Record:
        call = current_call()
        if call is None:
            return await self.inner.put(key, value, if_match=if_match, ttl=ttl)
        entry = self.entry(call, key, "put", _before(call, key, if_match), digest(value))
        return await self.inner.put(key, value, if_match=if_match, ttl=ttl, audit=entry)

    async def delete(self, key: str, *, if_match: IfMatch = None) -> bool:
        call = current_call()
        if call is None:
            return await self.inner.delete(key, if_match=if_match)
        entry = self.entry(call, key, "delete", _before(call, key, if_match), ABSENT_DIGEST)
        return await self.inner.delete(key, if_match=if_match, audit=entry)

    def entry(self, call: AuditCall, key: str, operation: str, before: str, after: str) -> bytes:
        subject = self._subject_of(key) if self._subject_of is not None else None
        return entry_of(
            call, key, operation, before, after, subject_ref(subject or call.subject or "", self._subject_key)
        )


class AuditedLog:
    """A log store (store/log/) whose appends inside an audited call carry one entry per append into the
    backend's atomic append: resource = the dedupe key (e.g. "producer:batch"), after = the sha256 of the
    batch (each entry length-prefixed). A duplicate append writes nothing, so no entry."""

    def __init__(self, log: Any, subject_key: bytes) -> None:
        self.inner = log
        self.capabilities = log.capabilities
        self._subject_key = subject_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, entries: Sequence[bytes], *, dedupe_key: str | None = None) -> Any:
        call = current_call()
        if call is None:
            return await self.inner.append(entries, dedupe_key=dedupe_key)
        batch = digest(encode_fields(list(entries)))
        subject = subject_ref(call.subject or "", self._subject_key)
        entry = entry_of(call, dedupe_key or "", "append", ABSENT_DIGEST, batch, subject)
        return await self.inner.append(entries, dedupe_key=dedupe_key, audit=entry)


def entry_of(call: AuditCall, resource: str, operation: str, before: str, after: str, subject: str) -> bytes:
    """The encoded Entry of one write made in `call`, now."""
    return Entry(
        time_ns=time.time_ns(),
        principal=call.principal(),
        method=call.method,
        contract=call.contract,
        resource=resource,
        operation=operation,
        before=before,
        after=after,
        request_id=call.request_id,
        status=call.status,
        subject=subject,
    ).encode()


def _before(call: AuditCall, key: str, if_match: IfMatch) -> str:
    """The before digest a write can vouch for: a create replaces nothing; a write guarded by the revision
    this call read replaces exactly what it read; anything else is not known."""
    if if_match is ABSENT:
        return ABSENT_DIGEST
    seen = call.seen.get(key)
    if isinstance(if_match, int) and seen is not None and seen.revision == if_match:
        return digest(seen.value)
    return UNKNOWN_DIGEST
