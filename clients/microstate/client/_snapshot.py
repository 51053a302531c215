"""Snapshots: the last good value of each key, in an LRU, optionally mirrored to a durable file.

The hot path (get / put) only touches a dict under a lock. Writing the file is write-behind: a daemon
thread rewrites it at most every `flush_interval` seconds when something changed, and `close()` writes
the final state, so neither an async event loop nor a sync caller ever waits on disk. A file that is
missing, foreign or damaged is logged and ignored: the client starts cold rather than failing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from microstate.client import _snapshot_file
from microstate.client._options import SnapshotOptions
from microstate.client._read import Read
from microstate.client._snapshot_file import SnapshotEntry

log = logging.getLogger("microstate.client")


class Snapshot:
    """One key's snapshot in memory: its file entry, and what the reads served from it share, so a hit
    does not decode the payload again. A refresh replaces the whole Snapshot: nothing shared outlives the
    entry it came from."""

    __slots__ = ("decoded", "entry", "read_while_open")

    def __init__(self, entry: SnapshotEntry) -> None:
        self.entry = entry
        self.decoded: Any = None
        """The message (of the client's type) decoded by the first read served from this snapshot;
        every later one returns the same object (see `Read.value`)."""
        self.read_while_open: Read[Any] | None = None
        """The read served while the circuit breaker is open. Its fallback reason is the client's one
        CircuitOpenError, so every such hit can return this same immutable Read."""


def snapshot_file(path: str | None, contract: str) -> str | None:
    """The file for `contract`: `path` itself, or `<contract>.snapshot` inside it when it is a directory."""
    if path and (path.endswith(("/", os.sep)) or os.path.isdir(path)):
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"{contract}.snapshot")
    return path


class SnapshotStore:
    def __init__(self, contract: str, options: SnapshotOptions) -> None:
        self._contract = contract
        self._max_entries = options.max_entries
        self._max_age = options.max_age
        self._path = snapshot_file(options.path, contract) if options.max_entries else None
        self._flush_interval = options.flush_interval
        self._entries: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if self._path is not None:
            self._load(self._path)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Snapshot | None:
        """The snapshot of `key` if there is one young enough to serve."""
        return self._young(key, time.time())

    def get_many(self, keys: Iterable[str]) -> dict[str, Snapshot | None]:
        """`get` of each key (None for a key without a snapshot young enough), reading the clock once."""
        now = time.time()
        return {key: self._young(key, now) for key in keys}

    def _young(self, key: str, now: float) -> Snapshot | None:
        # No lock on this hot path: each OrderedDict operation is atomic, and a key evicted between the
        # two steps is simply served one last time.
        snapshot, max_age = self._entries.get(key), self._max_age
        if snapshot is None or (max_age is not None and now - snapshot.entry.fetched_at > max_age):
            return None
        # Not contextlib.suppress: this is the snapshot-hit hot path, where try costs nothing.
        try:  # noqa: SIM105
            self._entries.move_to_end(key)
        except KeyError:
            pass
        return snapshot

    def put(self, key: str, payload: bytes, etag: str, fetched_at: float | None = None) -> None:
        """Refresh the snapshot of `key`, fetched at `fetched_at` (None: now)."""
        self.put_many(((key, payload, etag),), time.time() if fetched_at is None else fetched_at)

    def put_many(self, items: Iterable[tuple[str, bytes, str]], fetched_at: float) -> None:
        """Refresh the snapshot of each (key, payload, etag), in that order, all fetched at `fetched_at`.

        A batch read refreshes all its keys at once: one lock, one eviction and one flusher check per
        batch rather than per key. `items` is only iterated when snapshots are on.
        """
        if not self._max_entries:
            return
        # Built before taking the lock: `items` may be a generator that serializes messages.
        snapshots = [
            (key, Snapshot(SnapshotEntry(payload, etag, fetched_at))) for key, payload, etag in items
        ]
        if not snapshots:
            return
        entries = self._entries
        with self._lock:
            for key, snapshot in snapshots:
                entries[key] = snapshot
                entries.move_to_end(key)
            while len(entries) > self._max_entries:
                entries.popitem(last=False)
            self._dirty = True
        if self._path is not None and self._flusher is None:
            self._start_flusher()

    def discard(self, key: str) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._dirty = True

    def flush(self) -> None:
        """Write the file now if anything changed since the last write."""
        if self._path is None:
            return
        with self._lock:
            if not self._dirty:
                return
            items = [(key, snapshot.entry) for key, snapshot in self._entries.items()]
            self._dirty = False
        try:
            _snapshot_file.write_atomically(self._path, _snapshot_file.encode(self._contract, items))
        except OSError:
            with self._lock:
                self._dirty = True  # try again at the next flush
            log.warning("could not write snapshot file %s", self._path, exc_info=True)

    def close(self) -> None:
        """Stop the background writer and write the final state."""
        self._closed.set()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.join()
        self.flush()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None or self._closed.is_set():
                return
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="microstate-snapshot", daemon=True
            )
            self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self._flush_interval):
            self.flush()

    def _load(self, path: str) -> None:
        try:
            data = _snapshot_file.read(path)
            entries = _snapshot_file.decode(self._contract, data) if data is not None else []
        except (OSError, _snapshot_file.SnapshotFileError) as exc:
            log.warning("ignoring snapshot file %s: %s", path, exc)
            return
        # Oldest first in the file, so the most recently used keys survive a smaller max_entries.
        for key, entry in entries[-self._max_entries :]:
            self._entries[key] = Snapshot(entry)
