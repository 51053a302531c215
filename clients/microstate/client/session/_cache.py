"""The opt-in cache of positive session validations (`validate(token, accept_cached_for=N)`).

What it promises: a cached answer is at most N seconds old and never outlives its session's expire_time,
whether the server is up or not; and while the client's revocation watch is connected, a revocation of
its session or its user drops it as soon as the event arrives. For that last promise an answer is kept
only if the watch covers everything that happened since its live validation began:

- A watch stream opened from "" (no resume token yet) starts a new cover, later than anything validated
  before it: every entry is dropped (revocations before the cover may have been missed). A stream that
  ends before it has a resume token breaks the cover: nothing new is kept until the next one starts, and
  what is kept is served to its own end meanwhile (the server is likely down; the caller accepted
  answers N seconds old). A stream that ends with a resume token does not break it: the next one resumes
  there, with no gap.
- A validation notes the cache's `generation` before its call and keeps its answer only if there was a
  cover then and the generation is unchanged when the answer arrives. Every change of cover and every
  revocation moves it on: an answer the server gave just before a revocation committed may arrive after
  the revocation's event, which found nothing to drop.

These are the rules of a read-through `Replica` (microstate.client._replica), which holds the entries;
this module adds what is the session's own: expiry, scopes, and revocations by session or by user.

Keys are SHA-256 digests of the tokens: the tokens themselves are never kept, and nothing is written to
disk. Negative answers (UNAUTHENTICATED, PERMISSION_DENIED) are never cached; a cached session lacking a
required scope is asked about live. Thread-safe, as the Replica is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from microstate.client._read import Read, Source
from microstate.client._replica import Replica

MAX_ACCEPT_CACHED_FOR = 30.0
"""Seconds: the longest `accept_cached_for`. A session token replaced by RefreshSession still validates
for 30 seconds (session.proto), and refreshes are not streamed, so an answer at most 30 seconds old is
still right after a refresh the client cannot see; a longer cache could accept a rotated-out token."""

DEFAULT_MAX_ENTRIES = 10_000
"""Tokens cached at most; beyond it the oldest entry goes."""


def token_key(token: str) -> bytes:
    """The cache key of `token`: its SHA-256 digest."""
    return hashlib.sha256(token.encode()).digest()


def check_accept_cached_for(seconds: float) -> None:
    if not 0 < seconds <= MAX_ACCEPT_CACHED_FOR:
        raise ValueError(
            f"accept_cached_for must be > 0 and <= {MAX_ACCEPT_CACHED_FOR:g} seconds (a token replaced by"
            f" a refresh validates for {MAX_ACCEPT_CACHED_FOR:g} s more; longer could accept a dead one)"
        )


class _Entry:
    __slots__ = ("ends", "read", "scopes", "session_id", "user_id", "validated")

    def __init__(self, read: Read[Any], validated: float, ends: float) -> None:
        session = read.value
        self.read = read
        self.validated = validated
        """time.monotonic() when its live validation began: its age counts from then."""
        self.ends = ends
        """time.monotonic() after which it is never served: its session's end, or the longest cache life."""
        self.scopes = frozenset(session.scopes)
        self.session_id: str = session.session_id
        self.user_id: str = session.user_id


class ValidationCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._replica: Replica[bytes, _Entry] = Replica(max_entries=max_entries)

    def __len__(self) -> int:
        return len(self._replica)

    @property
    def generation(self) -> int | None:
        """To note before a live validation (see `put`); None while no watch covers anything."""
        return self._replica.begin_fill()

    def get(self, key: bytes, accept_for: float, required_scopes: Iterable[str]) -> Read[Any] | None:
        """The cached answer for `key`, if one is younger than `accept_for` seconds and its session has
        every required scope; None means: ask the service."""
        stored = self._replica.get(key)
        if stored is None:
            return None
        entry, now = stored.value, time.monotonic()
        if now >= entry.ends:
            self._replica.discard(key, stored)
            return None
        if now - entry.validated >= accept_for or not entry.scopes.issuperset(required_scopes):
            return None
        return entry.read

    def put(self, key: bytes, read: Read[Any], generation: int | None, started: float) -> None:
        """Keep a positive live answer to a validation that began at time.monotonic() `started`, when the
        cache's generation was `generation` (see the module docstring)."""
        life = read.value.expire_time.ToNanoseconds() / 1e9 - time.time()  # on the server's clock
        ends = started + min(life, MAX_ACCEPT_CACHED_FOR)
        if ends > time.monotonic():
            self._replica.fill(key, generation, _Entry(read._replace(source=Source.CACHE), started, ends))

    def watch_state(self, up: bool, resume_token: str) -> None:
        """The revocation watch's listener (WatchCursor): a stream opened or ended at `resume_token`."""
        self._replica.watch_listener(up, resume_token)

    def reset(self) -> None:
        """No cover any more (the watch failed for good): drop everything until a new one starts."""
        self._replica.clear()

    def revoke_session(self, session_id: str) -> None:
        # Revocations are rare next to validations: a scan of at most max_entries beats keeping indexes
        # by session and by user current on every put.
        self._replica.drop_where(lambda _, entry: entry.session_id == session_id)

    def revoke_user(self, user_id: str, except_session_id: str) -> None:
        self._replica.drop_where(
            lambda _, entry: entry.user_id == user_id and entry.session_id != except_session_id
        )
