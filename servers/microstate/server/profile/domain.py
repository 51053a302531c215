"""Profile rules, independent of any contract version.

The servicer's codecs (v1, v2) translate messages to `ProfileData` and call this;
everything about etags, atomic read-modify-write, paging tokens and the change
feed lives here once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from microstate.server.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from microstate.server.profile import rules
from microstate.server.profile.latest import LatestPerKey
from microstate.server.profile.model import ProfileData, StoredProfile
from microstate.server.store.base import (
    ABSENT,
    ChangeKind,
    CursorExpired,
    InvalidCursor,
    PreconditionFailed,
    Record,
    Store,
)

Patch = Callable[[ProfileData], ProfileData]
"""Turns the current profile into the updated one (built by an adapter from its update_mask)."""

# Unconditional updates retry their read-modify-write when a concurrent writer wins,
# so a partial update never overwrites fields it did not name.
MAX_UPDATE_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class Contract:
    """The contract version calling the domain: recorded on writes, and how it names fields in errors."""

    name: str
    """e.g. microstate.profile.v1; stored as ProfileData.written_by."""
    field_path: rules.FieldPath


@dataclass(frozen=True, slots=True)
class ProfileChange:
    kind: ChangeKind
    user_id: str
    profile: StoredProfile | None
    resume_token: str
    commit_time: float


class KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class DecodedProfiles:
    """The last decoded profile per key, reused while the stored bytes are unchanged, so hot reads skip
    decoding. The check is on the bytes themselves (a memcmp), not only the revision, so a store that was
    wiped and refilled can never serve an old decode. Bounded: the oldest insertion goes first.
    Relies on ProfileData being immutable (it is frozen, and every patch copies)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: LatestPerKey[tuple[bytes, StoredProfile]] = LatestPerKey(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def decode(self, record: Record) -> StoredProfile:
        hit = self._entries.get(record.key)
        if hit is not None and hit[1].revision == record.revision and hit[0] == record.value:
            return hit[1]
        stored = StoredProfile.from_record(record)
        self._entries.put(record.key, (record.value, stored))
        return stored


def _subject(user_id: str) -> str:
    return f"profiles/{user_id}"


def _not_found(user_id: str) -> NotFound:
    return NotFound(
        f"profile {user_id!r} does not exist", reason="PROFILE_NOT_FOUND", metadata={"user_id": user_id}
    )


def _lost_race(user_id: str, etag: str, failed: PreconditionFailed) -> NotFound | EtagMismatch:
    """What a write guarded by `etag` reports when another writer changed the profile first."""
    if failed.current is None:
        return _not_found(user_id)
    return EtagMismatch(_subject(user_id), etag, StoredProfile.from_record(failed.current).etag)


class ProfileDomain:
    def __init__(self, store: Store, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._store = store
        self._clock = clock
        self._key_locks = KeyedLocks()
        self._decoded = DecodedProfiles()

    async def get(self, user_id: str) -> StoredProfile:
        rules.check_user_id(user_id, "user_id")
        record = await self._store.get(user_id)
        if record is None:
            raise _not_found(user_id)
        return self._decoded.decode(record)

    async def batch_get(self, user_ids: Sequence[str]) -> tuple[list[StoredProfile], list[str]]:
        """Found profiles and missing ids, both in request order, duplicates answered once."""
        if not user_ids:
            raise InvalidArgument("user_ids", "at least one id is required")
        if len(user_ids) > rules.MAX_BATCH:
            raise InvalidArgument(
                "user_ids", f"{len(user_ids)} ids; at most {rules.MAX_BATCH}", reason="LIMIT_EXCEEDED"
            )
        rules.check_user_ids(user_ids, "user_ids")
        unique = list(dict.fromkeys(user_ids))
        records = await self._store.batch_get(unique)
        decode = self._decoded.decode
        if len(records) == len(unique):  # all found, the usual case: no membership test per id
            return [decode(records[u]) for u in unique], []
        found = [decode(records[u]) for u in unique if u in records]
        return found, [u for u in unique if u not in records]

    async def list(
        self,
        prefix: str,
        page_size: int,
        page_token: str,
        take: Callable[[StoredProfile], bool] = lambda _: True,
    ) -> tuple[list[StoredProfile], str]:
        """A page of profiles and the token of the next. `take` may refuse any profile but the first (the
        response is full): the page then ends before it and the token continues with it (AIP-158)."""
        limit = rules.page_size_of(page_size)
        after = _decode_page_token(page_token, prefix) if page_token else None
        page = await self._store.list(prefix, after=after, limit=limit)
        profiles: list[StoredProfile] = []
        for record in page.records:
            profile = StoredProfile.from_record(record)
            if not take(profile):
                return profiles, _encode_page_token(profiles[-1].data.user_id, prefix)
            profiles.append(profile)
        token = _encode_page_token(page.next_after, prefix) if page.next_after is not None else ""
        return profiles, token

    async def create(self, data: ProfileData, *, contract: Contract) -> StoredProfile:
        now = self._clock()
        data = replace(data, create_time_ns=now, update_time_ns=now, written_by=contract.name)
        rules.check_profile(data, contract.field_path)
        try:
            record = await self._store.put(data.user_id, data.to_bytes(), if_match=ABSENT)
        except PreconditionFailed:
            raise AlreadyExists(
                f"profile {data.user_id!r} already exists",
                reason="PROFILE_ALREADY_EXISTS",
                metadata={"user_id": data.user_id},
            ) from None
        return StoredProfile(data, record.revision)

    async def update(self, user_id: str, patch: Patch, *, etag: str, contract: Contract) -> StoredProfile:
        """Apply `patch` atomically. With an etag, a concurrent change is ABORTED; without, it is retried."""
        rules.check_user_id(user_id, contract.field_path("user_id"))
        # Same-key updates queue up inside this process instead of racing each other's CAS;
        # the CAS loop still guards against writers in other processes.
        async with self._key_locks.hold(user_id):
            return await self._update(user_id, patch, etag=etag, contract=contract)

    async def _update(self, user_id: str, patch: Patch, *, etag: str, contract: Contract) -> StoredProfile:
        for _ in range(MAX_UPDATE_ATTEMPTS):
            current = await self.get_for_write(user_id, etag)
            updated = replace(
                patch(current.data),
                user_id=user_id,
                create_time_ns=current.data.create_time_ns,
                update_time_ns=max(self._clock(), current.data.update_time_ns + 1),
                written_by=contract.name,
            )
            rules.check_profile(updated, contract.field_path)
            try:
                record = await self._store.put(user_id, updated.to_bytes(), if_match=current.revision)
            except PreconditionFailed as exc:
                if exc.current is None or etag:
                    raise _lost_race(user_id, etag, exc) from None
                continue  # unguarded: read again and reapply the patch
            return StoredProfile(updated, record.revision)
        raise FailedPrecondition(
            f"profile {user_id!r} changed {MAX_UPDATE_ATTEMPTS} times while updating; retry with an etag",
            reason="TOO_MUCH_CONTENTION",
        )

    async def get_for_write(self, user_id: str, etag: str) -> StoredProfile:
        current = await self.get(user_id)
        if etag and current.etag != etag:
            raise EtagMismatch(_subject(user_id), etag, current.etag)
        return current

    async def delete(self, user_id: str, *, etag: str) -> None:
        rules.check_user_id(user_id, "user_id")
        if etag:
            current = await self.get_for_write(user_id, etag)
            try:
                await self._store.delete(user_id, if_match=current.revision)
            except PreconditionFailed as exc:
                raise _lost_race(user_id, etag, exc) from None
            return
        if not await self._store.delete(user_id):
            raise _not_found(user_id)

    async def watch_start(self, resume_token: str) -> str:
        """Where a watch begins: after `resume_token`, or after the current head when it is empty."""
        return resume_token or await self._store.head_cursor()

    async def watch(self, prefix: str, start: str) -> AsyncGenerator[ProfileChange, None]:
        """Changes strictly after `start` (from watch_start)."""
        try:
            async for change in self._store.watch(prefix, after=start):
                profile = StoredProfile.from_record(change.record) if change.record else None
                yield ProfileChange(change.kind, change.key, profile, change.cursor, change.commit_time)
        except InvalidCursor:
            raise InvalidArgument("resume_token", "not a resume token issued by this service") from None
        except CursorExpired:
            raise FailedPrecondition(
                "resume_token is older than the retained change log; re-read, then watch from now",
                reason="RESUME_TOKEN_EXPIRED",
            ) from None


def _encode_page_token(after: str, prefix: str) -> str:
    raw = json.dumps({"a": after, "p": prefix}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_page_token(token: str, prefix: str) -> str:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        after, token_prefix = doc["a"], doc["p"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise InvalidArgument(
            "page_token", "not a page token issued by ListProfiles", reason="INVALID_PAGE_TOKEN"
        ) from None
    if token_prefix != prefix or not isinstance(after, str):
        raise InvalidArgument(
            "page_token",
            "this page token was issued for a different user_id_prefix",
            reason="INVALID_PAGE_TOKEN",
        )
    return after
