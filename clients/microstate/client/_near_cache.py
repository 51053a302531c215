"""The opt-in near-cache of a client's reads (`ClientOptions.near_cache`): a partial `Replica` of the
slice's key range, filled by live reads and kept coherent by a watch the client follows in the background.

What it promises: a value is served (Source.CACHE, no call) only while the watch is connected, or at most
`max_staleness` seconds after it broke; otherwise reads go live (and fall back to snapshots as usual). Its
`age` is the time since the value was read live; the watch proves it unchanged since. Every stream the
watch opens is a new cover that drops what was kept: a resumed stream replays the changes it missed
only after it opens, and until they arrive the entries could be older than they look. A change's event
drops its key; so does a write through this client (read-your-writes); a read in flight across either
is not kept (see `Replica.fill`).
"""

from __future__ import annotations

from typing import Any

from microstate.client._options import NearCacheOptions
from microstate.client._read import Read, Source
from microstate.client._replica import Replica, ReplicaStatus

CACHE = Source.CACHE


class NearCache:
    def __init__(self, options: NearCacheOptions) -> None:
        self.prefix = options.prefix
        self._max_staleness = options.max_staleness
        self._replica: Replica[str, tuple[Any, str]] = Replica(max_entries=options.max_entries)

    def __len__(self) -> int:
        return len(self._replica)

    def status(self) -> ReplicaStatus:
        return self._replica.status()

    def serve(self, key: str) -> Read[Any] | None:
        """The cached read of `key`, if it may be served now; None: read it live."""
        entry = self._replica.get(key)
        if entry is None or self._replica.age() > self._max_staleness:
            return None
        message, etag = entry.value
        return Read(message, CACHE, etag, entry.stored_at)

    def begin_fill(self) -> int | None:
        """Before a live read: the ticket to keep its answers with, or None (none kept)."""
        return self._replica.begin_fill()

    def fill(self, key: str, ticket: int | None, message: Any, etag: str) -> None:
        """Keep a live answer for `key`, if it is in the range and nothing changed it meanwhile."""
        if ticket is not None and key.startswith(self.prefix):
            # A copy: the caller owns its live read's message and may change it.
            kept = type(message)()
            kept.CopyFrom(message)
            self._replica.fill(key, ticket, (kept, etag))

    def invalidate(self, key: str) -> None:
        self._replica.invalidate(key)

    def watch_listener(self, up: bool, resume_token: str) -> None:
        """The watch's WatchCursor listener: every open is a new cover (see the module docstring), every
        end breaks it."""
        if up:
            self._replica.feed_opened(resumed=False)
        else:
            self._replica.feed_closed(resumed=False)

    def reset(self) -> None:
        """The watch failed for good or the client closed: drop everything until a new stream opens."""
        self._replica.clear()
