"""A local replica of a key range, kept coherent by a stream: the core of every client-side cache a watch
or a sync stream keeps current.

Two kinds of consumer use it:

- A full replica, fed by a sync stream: `apply_snapshot` (the whole range at a revision), then
  `apply_delta` ({revision, upserts, deletes}) and `heartbeat`; `mark_broken` when the stream fails;
  `restore` starts it from a persisted copy (STALE, with that copy's age). A delta at or below the
  replica's revision is ignored, so one resent after a resume changes nothing.
- A partial, read-through cache: entries are filled by live reads (`begin_fill` before the call, `fill`
  with its answer) and dropped by the events of a watch (`invalidate`). A fill is kept only if no event
  touched its key between the two calls and the watch covered the whole time, so an answer the service
  gave before a change never overwrites what the change's event did, whatever order they arrive in.

Cover. A watch covers the replica while every change since some moment reaches it. The feed reports
`feed_opened(resumed)` and `feed_closed(resumed)` (`watch_listener` adapts WatchCursor's listener): a
stream that is not resumed starts a new cover, so entries kept before it (which may have missed changes)
are dropped; a stream that ends with nothing to resume from breaks the cover, so nothing new is kept until
the next one starts.

Liveness. LIVE while the feed is connected and, when `heartbeat_timeout` is set, showed life (an event,
a heartbeat, a snapshot or delta) within that many seconds; STALE otherwise. `age()` is the seconds since
the replica was last known current: 0 while connected to a feed without heartbeats (the stream itself
is the proof), the time since its last sign of life on a feed with heartbeats, the time since the break
once broken; infinite before it ever was current.

Thread-safe: reads (`get`, `age`, `status`) take no lock (each dict operation is atomic); changes take
one, so a feed on one thread (or task) and reads on others never see a half-applied change.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

TOUCH_LOG_SIZE = 4096
"""Keys whose last change is remembered for fills in flight; a fill of a key older than the log is not
kept (as if it had been touched), so memory stays bounded under any write rate."""


class Liveness(enum.Enum):
    LIVE = "live"
    """The feed is connected and (with heartbeats) recently showed life."""
    STALE = "stale"
    """The feed is broken or silent: entries are what was known `age` seconds ago."""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    liveness: Liveness
    age: float
    """Seconds since the replica was last known current (see the module docstring)."""
    revision: int | None
    """The revision of the last snapshot or delta applied; None for a replica fed without revisions."""
    entries: int


class Entry(NamedTuple, Generic[V]):
    value: V
    revision: int | None
    """The revision it was applied at, or the one given to `fill`; None when unknown."""
    stored_at: float
    """Unix time it was filled or applied."""


class Replica(Generic[K, V]):
    """A key → (value, revision) map with a liveness state, fed by a stream (see the module docstring)."""

    def __init__(self, *, max_entries: int | None = None, heartbeat_timeout: float | None = None) -> None:
        """`max_entries`: the least recently used entries go beyond it (a partial cache); None keeps all
        (a full replica). `heartbeat_timeout`: seconds of silence after which a connected feed counts as
        STALE; None for a feed without heartbeats."""
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1 or None")
        if heartbeat_timeout is not None and heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be > 0 or None")
        self._max_entries = max_entries
        self._heartbeat_timeout = heartbeat_timeout
        self._entries: OrderedDict[K, Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._connected = False
        self._covered = False
        self._life: float | None = None
        """Unix time of the feed's last sign of life (or of its break); None: never current."""
        self._changes = 0
        """Counts changes; a fill notes it at `begin_fill`."""
        self._touched: OrderedDict[K, int] = OrderedDict()
        """The change count at each recently touched key's last change (bounded: TOUCH_LOG_SIZE)."""
        self._floor = 0
        """Fills begun before this count are not kept: a clear, a wide drop or the touch log's end."""

    def __len__(self) -> int:
        return len(self._entries)

    # -- reads -----------------------------------------------------------------------------------------

    def get(self, key: K) -> Entry[V] | None:
        """The entry of `key`, whatever the liveness: the consumer decides what it may serve."""
        entry = self._entries.get(key)
        if entry is not None and self._max_entries is not None:
            # Not contextlib.suppress: this is the hit path, where try costs nothing.
            try:  # noqa: SIM105
                self._entries.move_to_end(key)
            except KeyError:  # dropped meanwhile: served one last time
                pass
        return entry

    def items(self) -> list[tuple[K, Entry[V]]]:
        """Every entry, as one consistent copy."""
        with self._lock:
            return list(self._entries.items())

    def copy(self) -> tuple[int | None, list[tuple[K, V]]]:
        """The revision and every (key, value) at it, taken together: what to persist, and to `restore`
        from later."""
        with self._lock:
            return self._revision, [(key, entry.value) for key, entry in self._entries.items()]

    @property
    def revision(self) -> int | None:
        return self._revision

    def age(self, now: float | None = None) -> float:
        """Seconds since the replica was last known current (see the module docstring)."""
        life = self._life
        if life is None:
            return math.inf
        if self._connected and self._heartbeat_timeout is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - life)

    def status(self) -> ReplicaStatus:
        now = time.time()
        age = self.age(now)
        timeout = self._heartbeat_timeout
        live = self._connected and (timeout is None or age <= timeout)
        return ReplicaStatus(Liveness.LIVE if live else Liveness.STALE, age, self._revision, len(self))

    # -- a full replica's feed -------------------------------------------------------------------------

    def apply_snapshot(self, revision: int, items: Iterable[tuple[K, V]]) -> None:
        """Replace every entry with `items`, the whole range at `revision`; the feed is live. A snapshot
        sent in chunks is applied once its last chunk is in (`items` may be a generator over them: it is
        consumed before the swap, so readers see the old range or the new one, never a mix)."""
        fresh = OrderedDict((key, Entry(value, revision, time.time())) for key, value in items)
        with self._lock:
            self._entries = fresh
            self._revision = revision
            self._reset_fills()
            self._alive()

    def apply_delta(
        self, revision: int, upserts: Iterable[tuple[K, V]] = (), deletes: Iterable[K] = ()
    ) -> bool:
        """Apply the changes that lead to `revision`; False (and nothing changed) when the replica is
        already at or past it. The feed is live either way."""
        now = time.time()
        with self._lock:
            self._alive()
            if self._revision is not None and revision <= self._revision:
                return False
            for key, value in upserts:
                self._touch(key)
                self._store(key, Entry(value, revision, now))
            for key in deletes:
                self._touch(key)
                self._entries.pop(key, None)
            self._revision = revision
            return True

    def heartbeat(self) -> None:
        """The feed is alive and nothing changed."""
        with self._lock:
            self._alive()

    def mark_broken(self) -> None:
        """The feed's stream failed; it will resume from the replica's revision (entries are kept and
        served as STALE by consumers that accept it)."""
        self.feed_closed(resumed=True)

    def restore(self, revision: int | None, items: Iterable[tuple[K, V]], as_of: float) -> None:
        """Start from a persisted copy, current at Unix time `as_of`: STALE, aged from then, until the
        feed connects."""
        fresh = OrderedDict((key, Entry(value, revision, as_of)) for key, value in items)
        with self._lock:
            self._entries = fresh
            self._revision = revision
            self._life = as_of
            self._connected = False
            self._reset_fills()

    # -- a watch's feed --------------------------------------------------------------------------------

    def feed_opened(self, resumed: bool) -> None:
        """A stream is open: resumed right after the last change seen (no gap), or a new cover from now,
        which drops every entry."""
        with self._lock:
            if not resumed:
                self._entries.clear()
                self._reset_fills()
            self._covered = True
            self._alive()

    def feed_closed(self, resumed: bool) -> None:
        """The stream ended; `resumed`: the next one continues right after it (the cover holds), else
        nothing new is kept until a new cover starts."""
        with self._lock:
            if self._connected:
                self._life = time.time()
            self._connected = False
            if not resumed:
                self._covered = False
                self._reset_fills()

    def watch_listener(self, up: bool, resume_token: str) -> None:
        """A WatchCursor listener: a stream with a resume token continues the last one."""
        (self.feed_opened if up else self.feed_closed)(bool(resume_token))

    def invalidate(self, key: K) -> None:
        """A watch event changed `key`: drop its entry, and do not keep a fill in flight for it."""
        with self._lock:
            self._touch(key)
            self._entries.pop(key, None)
            if self._connected:
                self._alive()

    def discard(self, key: K, entry: Entry[V] | None = None) -> None:
        """Drop `key`'s entry (only if it is still `entry`, when given): the consumer found it unusable."""
        with self._lock:
            if entry is None or self._entries.get(key) is entry:
                self._entries.pop(key, None)

    def drop_where(self, doomed: Callable[[K, V], bool]) -> None:
        """Drop the entries `doomed` names (a change that names no single key), and every fill in flight.
        A scan: for rare changes."""
        with self._lock:
            self._reset_fills()
            for key in [key for key, entry in self._entries.items() if doomed(key, entry.value)]:
                del self._entries[key]

    def clear(self) -> None:
        """Drop everything; no cover until a new stream opens (the feed failed for good)."""
        with self._lock:
            self._entries.clear()
            self._covered = False
            self._connected = False
            self._reset_fills()

    # -- a read-through cache's fills ------------------------------------------------------------------

    def begin_fill(self) -> int | None:
        """Call before a live read whose answer may be kept: the ticket for `fill`, or None when no
        watch covers the replica (the answer cannot be kept)."""
        with self._lock:
            return self._changes if self._covered else None

    def fill(self, key: K, ticket: int | None, value: V, revision: int | None = None) -> bool:
        """Keep the answer of a live read begun at `ticket` unless a change may have come after it (a
        touch of its key, a new cover, a wide drop): then it is older than what the replica knows. An
        answer that carries its `revision` is also refused when the entry it would replace is newer."""
        if ticket is None:
            return False
        now = time.time()
        with self._lock:
            last = max(self._touched.get(key, 0), self._floor)
            if not self._covered or last > ticket:
                return False
            present = self._entries.get(key)
            if present is not None and _older(revision, present.revision):
                return False
            self._store(key, Entry(value, revision, now))
            return True

    # -- under the lock --------------------------------------------------------------------------------

    def _alive(self) -> None:
        self._connected = True
        self._life = time.time()

    def _store(self, key: K, entry: Entry[V]) -> None:
        entries = self._entries
        entries[key] = entry
        if self._max_entries is not None:
            entries.move_to_end(key)
            while len(entries) > self._max_entries:
                entries.popitem(last=False)

    def _touch(self, key: K) -> None:
        self._changes += 1
        touched = self._touched
        touched[key] = self._changes
        touched.move_to_end(key)
        if len(touched) > TOUCH_LOG_SIZE:
            _, forgotten = touched.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def _reset_fills(self) -> None:
        self._changes += 1
        self._floor = self._changes
        self._touched.clear()


def _older(revision: int | None, than: int | None) -> bool:
    return revision is not None and than is not None and revision < than
