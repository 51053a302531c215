"""Keyed resources over the records store: decoded reads, etag-guarded writes, and a resumable change feed.

What every slice that keeps resources under string keys does the same way, written once: NOT_FOUND and
ALREADY_EXISTS with the slice's reasons, AIP-154 etags (a stale one is ABORTED with a PreconditionFailure),
read-modify-write under a per-key lock with compare-and-set and retry, and watch cursors mapped to statuses.
A slice supplies a `Kind` (its noun, its key field and its stored encoding) and keeps its own rules.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

from microstate.server.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from microstate.server.kit.caches import DecodedRecords
from microstate.server.kit.idempotency import AppliedRequest, WriteRequest, remembered, was_applied
from microstate.server.kit.locks import KeyedLocks
from microstate.server.kit.paging import PageTokens
from microstate.server.store.base import (
    ABSENT,
    Change,
    ChangeKind,
    CursorExpired,
    IfMatch,
    InvalidCursor,
    PreconditionFailed,
    Record,
    Store,
)

T = TypeVar("T")

MAX_UPDATE_ATTEMPTS = 16
"""Unguarded updates retry their read-modify-write this often when concurrent writers keep winning."""


class Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED
"""What an update's `change` returns to leave the resource as it is: nothing is written."""

Ttl = Callable[[T], float | None]
"""The seconds a value about to be written should live (None: no expiry), e.g. until an expiry it holds."""


def etag_of(revision: int) -> str:
    # Weak-etag-like and opaque: clients compare, never parse.
    return f'W/"{revision}"'


class Stored(NamedTuple, Generic[T]):
    """A decoded value and the store revision it was read or written at. A NamedTuple: reads build one per
    key, and a generic frozen dataclass cannot have slots (Stored[X](...) then fails)."""

    data: T
    revision: int

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclass(frozen=True)
class ResourceChange(Generic[T]):
    kind: ChangeKind
    key: str
    stored: Stored[T] | None
    """The resource after the change; None when it was deleted."""
    resume_token: str
    commit_time: float


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One kind of resource: how it is named in errors and how its value is stored."""

    noun: str
    """e.g. "profile": errors say "profile 'u1' does not exist", reasons PROFILE_NOT_FOUND, subjects
    profiles/u1."""
    key_field: str
    """The request field that holds the key, e.g. "user_id" (ErrorInfo metadata)."""
    to_bytes: Callable[[T], bytes]
    from_bytes: Callable[[bytes], T]
    requests: Callable[[T], Sequence[AppliedRequest]] | None = None
    """For a kind whose writes take request ids (kit/idempotency.py): the applied requests a value holds."""
    with_requests: Callable[[T, tuple[AppliedRequest, ...]], T] | None = None
    """The value holding these applied requests instead."""

    def stored(self, record: Record) -> Stored[T]:
        return Stored(self.from_bytes(record.value), record.revision)

    def subject(self, key: str) -> str:
        return f"{self.noun}s/{key}"

    def not_found(self, key: str) -> NotFound:
        return NotFound(
            f"{self.noun} {key!r} does not exist",
            reason=f"{self.noun.upper()}_NOT_FOUND",
            metadata={self.key_field: key},
        )

    def already_exists(self, key: str) -> AlreadyExists:
        return AlreadyExists(
            f"{self.noun} {key!r} already exists",
            reason=f"{self.noun.upper()}_ALREADY_EXISTS",
            metadata={self.key_field: key},
        )

    def lost_race(self, key: str, etag: str, failed: PreconditionFailed) -> NotFound | EtagMismatch:
        """What a write guarded by `etag` reports when another writer changed the resource first."""
        if failed.current is None:
            return self.not_found(key)
        return EtagMismatch(self.subject(key), etag, etag_of(failed.current.revision))


class Resources(Generic[T]):
    """The resources of one kind in one store. Keys are validated by the caller (the slice's rules)."""

    def __init__(self, store: Store, kind: Kind[T], page_tokens: PageTokens) -> None:
        self.store = store
        self.kind = kind
        self._page_tokens = page_tokens
        self._decoded = DecodedRecords(kind.stored)
        self._key_locks = KeyedLocks()

    async def get(self, key: str) -> Stored[T]:
        record = await self.store.get(key)
        if record is None:
            raise self.kind.not_found(key)
        return self._decoded.decode(record)

    def decode(self, record: Record) -> Stored[T]:
        """A record of this kind read by other means (e.g. one batch over several kinds), decoded once."""
        return self._decoded.decode(record)

    async def batch_get(self, keys: Sequence[str]) -> tuple[list[Stored[T]], list[str]]:
        """Found resources and missing keys, both in request order, duplicates answered once."""
        unique = list(dict.fromkeys(keys))
        records = await self.store.batch_get(unique)
        decode = self._decoded.decode
        if len(records) == len(unique):  # all found, the usual case: no membership test per key
            return [decode(records[k]) for k in unique], []
        found = [decode(records[k]) for k in unique if k in records]
        return found, [k for k in unique if k not in records]

    async def list(
        self,
        prefix: str,
        limit: int,
        page_token: str,
        take: Callable[[Stored[T]], bool] = lambda _: True,
    ) -> tuple[list[Stored[T]], str]:
        """One page of the resources whose keys start with `prefix`, and the next page's token. `take` may
        refuse any resource but the first (e.g. the response is full): the page then ends before it, and
        the token continues with it (AIP-158 allows short pages)."""
        after = self._page_tokens.decode(page_token, prefix)
        page = await self.store.list(prefix, after=after, limit=limit)
        stored = self.kind.stored
        taken: list[Stored[T]] = []
        for record in page.records:
            resource = stored(record)
            if not take(resource):  # never the first: `taken` holds at least one
                return taken, self._page_tokens.encode(page.records[len(taken) - 1].key, prefix)
            taken.append(resource)
        return taken, self._page_tokens.encode(page.next_after, prefix)

    async def create(
        self, key: str, data: T, *, ttl: float | None = None, request: WriteRequest | None = None
    ) -> Stored[T]:
        """Create `key`; ALREADY_EXISTS if it exists, unless it was created by this very `request` (a retry:
        the resource is returned as it is)."""
        if request is not None:
            data = self._remember(data, (), request)
        try:
            record = await self.store.put(key, self.kind.to_bytes(data), if_match=ABSENT, ttl=ttl)
        except PreconditionFailed as exc:
            if request is not None and exc.current is not None:
                current = self.decode(exc.current)
                if self._applied(current, request):
                    return current
            raise self.kind.already_exists(key) from None
        return Stored(data, record.revision)

    def _applied(self, current: Stored[T], request: WriteRequest) -> bool:
        assert self.kind.requests is not None, f"{self.kind.noun} writes take no request ids"
        return was_applied(self.kind.requests(current.data), request)

    def _remember(self, data: T, history: Sequence[AppliedRequest], request: WriteRequest) -> T:
        assert self.kind.with_requests is not None, f"{self.kind.noun} writes take no request ids"
        return self.kind.with_requests(data, remembered(history, request, time.time_ns()))

    async def update(
        self,
        key: str,
        change: Callable[[Stored[T]], T | Unchanged],
        *,
        etag: str,
        ttl: Ttl[T] | None = None,
        request: WriteRequest | None = None,
    ) -> Stored[T]:
        """Write `change(current)` atomically. With an etag, a concurrent change is ABORTED; without, the
        read-modify-write is retried, so a partial update never overwrites what it did not name.
        `change` may return UNCHANGED (nothing is written) or raise (nothing is written, the error
        propagates); `ttl` gives the written value's expiry (default: none). A retry of `request` that
        was applied already changes nothing and returns the resource as it is (its etag is then moot)."""

        async def read() -> Stored[T]:
            # With a request id, the etag is checked after looking for the request: a retry of an applied
            # write carries the etag it replaced.
            return await (self.get(key) if request is not None else self.get_for_write(key, etag))

        def apply(current: Stored[T] | None) -> T | Unchanged:
            assert current is not None  # read() raises NOT_FOUND rather than return None
            if request is None:
                return change(current)
            if self._applied(current, request):
                return UNCHANGED
            self._check_etag(key, etag, current)
            updated = change(current)
            if updated is UNCHANGED:
                return updated
            assert self.kind.requests is not None
            return self._remember(updated, self.kind.requests(current.data), request)

        def lost(exc: PreconditionFailed) -> None:
            if exc.current is None or etag:
                raise self.kind.lost_race(key, etag, exc) from None
            # unguarded: read again and apply the change again

        stored = await self._read_modify_write(key, read, apply, ttl, lost)
        assert stored is not None
        return stored

    async def upsert(
        self, key: str, change: Callable[[Stored[T] | None], T | Unchanged], *, ttl: Ttl[T] | None = None
    ) -> Stored[T] | None:
        """Write `change(current)` atomically, `current` being None when the resource does not exist (it is
        then created): AIP-134's update with allow_missing. Concurrent changes are retried. Returns the
        resource as written, or as it is when `change` returned UNCHANGED (None if absent)."""

        async def read() -> Stored[T] | None:
            record = await self.store.get(key)
            return None if record is None else self._decoded.decode(record)

        return await self._read_modify_write(key, read, change, ttl, lambda exc: None)

    async def _read_modify_write(
        self,
        key: str,
        read: Callable[[], Awaitable[Stored[T] | None]],
        change: Callable[[Stored[T] | None], T | Unchanged],
        ttl: Ttl[T] | None,
        lost: Callable[[PreconditionFailed], None],
    ) -> Stored[T] | None:
        """The compare-and-set loop; when another writer won, `lost` raises (give up) or returns (retry)."""
        # Same-key writes queue up inside this process instead of racing each other's CAS;
        # the CAS loop still guards against writers in other processes.
        async with self._key_locks.hold(key):
            for _ in range(MAX_UPDATE_ATTEMPTS):
                current = await read()
                updated = change(current)
                if updated is UNCHANGED:
                    return current
                if_match: IfMatch = ABSENT if current is None else current.revision
                expiry = None if ttl is None else ttl(updated)
                try:
                    record = await self.store.put(
                        key, self.kind.to_bytes(updated), if_match=if_match, ttl=expiry
                    )
                except PreconditionFailed as exc:
                    lost(exc)
                    continue
                return Stored(updated, record.revision)
        raise FailedPrecondition(
            f"{self.kind.noun} {key!r} changed {MAX_UPDATE_ATTEMPTS} times while updating;"
            " retry with an etag",
            reason="TOO_MUCH_CONTENTION",
        )

    async def get_for_write(self, key: str, etag: str) -> Stored[T]:
        """The current resource, if `etag` is empty or still its etag (else ABORTED)."""
        current = await self.get(key)
        self._check_etag(key, etag, current)
        return current

    def _check_etag(self, key: str, etag: str, current: Stored[T]) -> None:
        """ABORTED unless `etag` is empty or still the resource's etag (AIP-154)."""
        if etag and current.etag != etag:
            raise EtagMismatch(self.kind.subject(key), etag, current.etag)

    async def delete(self, key: str, *, etag: str, request: WriteRequest | None = None) -> None:
        """Delete `key` (guarded by `etag` when set). With a `request`, a resource that is not there counts as
        deleted: the retry of a delete that was applied cannot be told from a first call once it is gone."""
        try:
            if etag:
                current = await self.get_for_write(key, etag)
                try:
                    await self.store.delete(key, if_match=current.revision)
                except PreconditionFailed as exc:
                    raise self.kind.lost_race(key, etag, exc) from None
                return
            if not await self.store.delete(key):
                raise self.kind.not_found(key)
        except NotFound:
            if request is None:
                raise

    async def watch_start(self, resume_token: str) -> str:
        """Where a watch begins: after `resume_token`, or after the current head when it is empty."""
        return resume_token or await self.store.head_cursor()

    async def watch(self, prefix: str, start: str) -> AsyncGenerator[ResourceChange[T], None]:
        """Changes strictly after `start` (from watch_start)."""
        stored = self.kind.stored
        async for change in changes(self.store, prefix, start):
            value = stored(change.record) if change.record else None
            yield ResourceChange(change.kind, change.key, value, change.cursor, change.commit_time)


async def changes(store: Store, prefix: str, start: str) -> AsyncGenerator[Change, None]:
    """The store's changes strictly after cursor `start`, with a bad or expired cursor reported as the
    status a client can act on: for a slice whose watch covers several kinds of record."""
    try:
        async for change in store.watch(prefix, after=start):
            yield change
    except InvalidCursor:
        raise InvalidArgument("resume_token", "not a resume token issued by this service") from None
    except CursorExpired:
        raise FailedPrecondition(
            "resume_token is older than the retained change log; re-read, then watch from now",
            reason="RESUME_TOKEN_EXPIRED",
        ) from None
