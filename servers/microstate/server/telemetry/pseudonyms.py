"""Subject ids in raw events are pseudonyms under a key per subject, so erasing a subject is deleting its key.

The raw log is append-only and each entry is a batch of many subjects' events: rewriting it to drop one
subject's events would break what the log promises (nothing written is changed; followers never see a gap),
and Redis streams cannot change an entry at all. So the log never holds a subject id: before a batch is
appended each `subject_id` becomes `psn:` + HMAC-SHA256(subject key, subject id), the subject key being 32
random bytes kept in the records store under `subject-keys/<sha256 of the id>`. Erasing the subject deletes
that key (crypto-shredding): the raw events stay until the raw TTL trims them, but nothing links them to
anyone any more. Rollups never held subject ids.

Keys are cached in memory per process (bounded); an erase in this process drops its own entry. Another
server process sharing the store may pseudonymise with a key it cached before the erase, for at most
`CACHE_SECONDS`: those events are unlinkable too, once its cache lets go.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import weakref

from microstate.server.kit.caches import LatestPerKey
from microstate.server.kit.subjects import erase_records
from microstate.server.store.base import ABSENT, PreconditionFailed, Store

PREFIX = "subject-keys/"
PSEUDONYM_PREFIX = "psn:"
MAX_CACHED = 10_000
CACHE_SECONDS = 60.0


def key_name(subject: str) -> str:
    return PREFIX + hashlib.sha256(b"microstate.telemetry subject\0" + subject.encode()).hexdigest()


class Pseudonyms:
    def __init__(self, records: Store) -> None:
        self._records = records
        self._cached: LatestPerKey[tuple[float, str]] = LatestPerKey(MAX_CACHED)
        """subject -> (when its key was read, its pseudonym): the hot path hashes nothing."""

    async def _pseudonym(self, subject: str, *, create: bool) -> str | None:
        now = time.monotonic()
        hit = self._cached.get(subject)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        name = key_name(subject)
        record = await self._records.get(name)
        key = None if record is None else record.value
        if key is None and create:
            key = secrets.token_bytes(32)
            try:
                await self._records.put(name, key, if_match=ABSENT)
            except PreconditionFailed as lost:  # another call made the subject's key first
                assert lost.current is not None
                key = lost.current.value
        if key is None:
            return None
        pseudonym = PSEUDONYM_PREFIX + hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:32]
        self._cached.put(subject, (now, pseudonym))
        return pseudonym

    async def of(self, subject: str) -> str:
        """The pseudonym of `subject` in events, making its key the first time."""
        pseudonym = await self._pseudonym(subject, create=True)
        assert pseudonym is not None
        return pseudonym

    async def existing(self, subject: str) -> str | None:
        """The pseudonym of `subject`, None once its key was erased (or if it never had one)."""
        return await self._pseudonym(subject, create=False)

    async def erase(self, subject: str) -> int:
        """Delete the subject's key, and the store's history of it; 1 if it had one."""
        self._cached.pop(subject, None)
        return await erase_records(self._records, [key_name(subject)], announced=False)


_shared: weakref.WeakKeyDictionary[Store, Pseudonyms] = weakref.WeakKeyDictionary()


def pseudonyms_of(records: Store) -> Pseudonyms:
    """The one Pseudonyms of `records`, shared by the ingest and the erase so an erase empties the cache the
    ingest reads."""
    found = _shared.get(records)
    if found is None:
        found = _shared[records] = Pseudonyms(records)
    return found
