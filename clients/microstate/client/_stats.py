"""What a client has done since it was made: reads by where their answer came from, writes, and failures.

Readable at any time (`client.stats()`), e.g. to export as metrics or to alert on a fleet reading from
snapshots; counting costs one uncontended lock per call, so the counts are exact across threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from microstate.client._breaker import BreakerState


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counts of values read, not of calls: a batch of 10 found keys is 10 reads."""

    live_reads: int
    """Values the service answered."""
    snapshot_reads: int
    """Values served from snapshots because the service could not answer (stale)."""
    cached_reads: int
    """Values served from the near-cache (no call)."""
    failed_reads: int
    """Reads that raised: not found, refused, or unavailable with no snapshot to serve."""
    writes: int
    """Writes the service acknowledged."""
    failed_writes: int
    """Writes that raised (a write whose answer was lost may still have been applied)."""
    breaker: BreakerState
    """The circuit breaker in front of reads now."""
    snapshot_entries: int
    """Keys with a snapshot held now."""


class Counters:
    """The running counts behind `ClientStats`."""

    __slots__ = ("_lock", "cached", "failed_reads", "failed_writes", "live", "snapshot", "writes")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.live = self.snapshot = self.cached = self.failed_reads = self.writes = self.failed_writes = 0

    def read_live(self, n: int = 1) -> None:
        with self._lock:
            self.live += n

    def read_snapshot(self, n: int = 1) -> None:
        with self._lock:
            self.snapshot += n

    def read_cached(self, n: int = 1) -> None:
        with self._lock:
            self.cached += n

    def read_failed(self, n: int = 1) -> None:
        with self._lock:
            self.failed_reads += n

    def wrote(self) -> None:
        with self._lock:
            self.writes += 1

    def write_failed(self) -> None:
        with self._lock:
            self.failed_writes += 1

    def stats(self, breaker: BreakerState, snapshot_entries: int) -> ClientStats:
        with self._lock:
            return ClientStats(
                self.live,
                self.snapshot,
                self.cached,
                self.failed_reads,
                self.writes,
                self.failed_writes,
                breaker,
                snapshot_entries,
            )
