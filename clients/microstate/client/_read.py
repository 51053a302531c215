"""What reads return: the value plus where it came from, so callers can tell live data from a snapshot."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from microstate.client.errors import MicrostateError

T = TypeVar("T")


class Source(enum.Enum):
    LIVE = "live"
    """Answered by the service for this call."""
    SNAPSHOT = "snapshot"
    """Served from the client's snapshot because the service could not answer (see fallback_reason)."""
    CACHE = "cache"
    """Served from a cache the caller opted in to, without asking the service (`age` says how long ago
    it answered; fallback_reason is None): `validate(accept_cached_for=N)` of the session client (an
    answer at most N seconds old, whether or not the service is up), or the near-cache of
    `ClientOptions.near_cache` (a value its watch proves unchanged; see NearCacheOptions)."""


class Read(NamedTuple, Generic[T]):
    """One read value and its provenance. Immutable, though its value (a message) is not: see `value`.
    A NamedTuple rather than a frozen dataclass: it is built on snapshot hits, and this halves that cost
    (the hit path targets a few microseconds)."""

    value: T
    """The message. A live read's is its own. A snapshot read's is shared: every read served from the
    key's snapshot returns this same object until a live read, a write or a watch event refreshes it
    (decoding it on every hit cost more than the rest of the hit). Treat it as read-only and copy it
    before changing it (`mine = Profile(); mine.CopyFrom(read.value)`): a change shows in the key's later
    snapshot reads in this process (never in the snapshot file, which keeps the bytes read live). A
    near-cache read's is shared the same way."""
    source: Source
    etag: str
    """The value's etag; "" for values that have none (sessions)."""
    fetched_at: float
    """Unix time the value was read live (for a snapshot: when the snapshot was taken)."""
    fallback_reason: MicrostateError | None = None
    """Why the live read was not used (UNAVAILABLE, DEADLINE_EXCEEDED, LatencyBudgetExceeded,
    CircuitOpenError); None for a live read and for a cached one."""

    @property
    def stale(self) -> bool:
        """Served from a snapshot because the service could not answer (a CACHE answer is not stale: the
        caller asked for it)."""
        return self.source is Source.SNAPSHOT

    @property
    def age(self) -> float:
        """Seconds since the value was read live."""
        return max(0.0, time.time() - self.fetched_at)


@dataclass(frozen=True, slots=True)
class BatchRead(Generic[T]):
    """A batch read. Every requested key is in exactly one of found, missing and unavailable."""

    found: dict[str, Read[T]]
    """Keys answered, live or (when the live call failed) from their snapshots, in request order."""
    missing: list[str] = field(default_factory=list)
    """Keys the service says do not exist (only known from a live answer)."""
    unavailable: list[str] = field(default_factory=list)
    """Keys the live call could not answer and that have no snapshot."""
    fallback_reason: MicrostateError | None = None
    """Why the live answer was not used; None when it was."""

    @property
    def stale(self) -> bool:
        return self.fallback_reason is not None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a List call (AIP-158). Always live: lists never fall back to snapshots."""

    items: list[T]
    next_page_token: str
    """Pass as page_token for the next page; "" on the last page."""
