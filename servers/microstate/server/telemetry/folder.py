"""The fold: stored batches, in log order, into minute rollups, each batch exactly once.

Ingest only appends to the log (atomic with its dedupe key, so a resent batch is one entry). The folder reads
the log from its checkpoint, folds entries into rollups in memory and, per *round* of entries (start, end],
writes each touched rollup with compare-and-set, stamping it `folded_through = end`. The stamp makes the
fold idempotent without a transaction across records: a rollup stamped at or past `end` already holds the
round and is left alone; one stamped inside the round (another server process folding the same log in
rounds of its own) gets exactly the entries after its stamp, read again from the log. A crash between two
writes loses nothing: the next start refolds from the checkpoint, written only after every rollup of a
round, and the stamps skip what was already written. Stamps only ever grow (each write is a CAS over what
it read), so several processes may fold the same log at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from microstate.server.cancellation import end_if_cancelled
from microstate.server.store.base import ABSENT, CursorExpired, PreconditionFailed, Record, Store, StoreError
from microstate.server.store.log import LogStore
from microstate.server.telemetry.rollups import CHECKPOINT_KEY, Rollup, Rollups, fold, rollup_key
from microstate.server.telemetry.rules import MINUTE
from microstate.telemetry.storage.v1 import record_pb2 as storage

log = logging.getLogger(__name__)

READ_BATCH: Final = 256
"""Log entries read at once."""
ROUND_SECONDS: Final = 0.25
"""A round of folded entries is written at least this often while entries come in (queries see them)."""
ROUND_ENTRIES: Final = 512
"""... or once this many entries are folded."""
POLL_SECONDS: Final = 0.2
"""How often an idle folder looks for entries appended by other processes (its own wake it at once)."""
TRIM_SECONDS: Final = 60.0
RETRY_SECONDS: Final = 1.0
"""Pause after a store failure before the folder tries again."""
GET_BATCH: Final = 500
MAX_CAS_ATTEMPTS: Final = 16


def decode_batch(data: bytes) -> storage.StoredBatch:
    return storage.StoredBatch.FromString(data)


class Folder:
    """Folds the log into rollups in a task of its own; `wake()` after an append, `folded` for lag."""

    def __init__(
        self,
        log_store: LogStore,
        records: Store,
        *,
        raw_ttl: float,
        rollup_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = log_store
        self._records = records
        self._raw_ttl = raw_ttl
        self._rollup_ttl = rollup_ttl
        self._clock = clock
        self._wake = asyncio.Event()
        self.folded = 0
        """Every log position up to this one is written into the rollups (by this process, or found so)."""
        self._last_commit_time = 0.0
        """Commit time of the last entry folded: trimming never goes past it."""
        self._next_trim = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Fold until cancelled, through store outages."""
        while True:
            end_if_cancelled()
            try:
                await self._fold_from_checkpoint()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("telemetry fold interrupted; retrying", extra={"error": str(exc)})
            except Exception:
                log.exception("telemetry fold failed; retrying")
            await asyncio.sleep(RETRY_SECONDS)  # a backoff, not synchronisation

    async def _fold_from_checkpoint(self) -> None:
        record = await self._records.get(CHECKPOINT_KEY)
        start = storage.Checkpoint.FromString(record.value).folded_through if record else 0
        self.folded = max(self.folded, start)
        cursor: str | None = str(self.folded)
        rollups: Rollups = {}
        round_start = self.folded
        round_entries = 0
        round_began = time.monotonic()
        while True:
            end_if_cancelled()  # a driver may have lost a cancellation (see cancellation.py)
            try:
                page = await self._log.read(cursor, limit=READ_BATCH)
            except CursorExpired:
                # Trimmed before it was folded: only a server down longer than the raw retention gets here.
                log.error("telemetry log trimmed past the fold checkpoint; folding from the oldest entry")
                page = await self._log.read(None, limit=READ_BATCH)
                round_start = self.folded = page.entries[0].position - 1 if page.entries else self.folded
            for entry in page.entries:
                fold(rollups, decode_batch(entry.data).events)
                self._last_commit_time = entry.commit_time
            cursor = page.cursor
            round_entries += len(page.entries)
            if page.more and round_entries < ROUND_ENTRIES and time.monotonic() - round_began < ROUND_SECONDS:
                continue
            if round_entries:
                end = int(page.cursor)
                await self._write_round(rollups, round_start, end)
                rollups, round_start, round_entries = {}, end, 0
                round_began = time.monotonic()
            await self._trim_if_due()
            if not page.more:
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_SECONDS):
                await self._wake.wait()
        self._wake.clear()

    async def _write_round(self, rollups: Rollups, start: int, end: int) -> None:
        keys = {rollup_key(name, minute): (minute, rollup) for (name, minute), rollup in rollups.items()}
        names = list(keys)
        for offset in range(0, len(names), GET_BATCH):
            part = names[offset : offset + GET_BATCH]
            found = await self._records.batch_get(part)
            await asyncio.gather(*(self._write(key, *keys[key], found.get(key), start, end) for key in part))
        self.folded = end
        checkpoint = storage.Checkpoint(folded_through=end).SerializeToString()
        await self._raise_checkpoint(checkpoint, end)

    async def _write(
        self, key: str, minute: int, delta: Rollup, current: Record | None, start: int, end: int
    ) -> None:
        expires = (minute + 1) * MINUTE + self._rollup_ttl
        for _ in range(MAX_CAS_ATTEMPTS):
            stored = storage.MinuteRollup.FromString(current.value) if current else None
            stamp = stored.folded_through if stored else 0
            if stamp >= end:
                return  # another process wrote this round already
            rollup = Rollup.from_storage(stored) if stored else Rollup()
            rollup.merge(delta if stamp <= start else await self._refold(key, stamp, end))
            ttl = expires - self._clock()
            if ttl <= 0:
                return  # past the rollup retention: nothing to keep
            value = rollup.to_storage(end).SerializeToString()
            try:
                await self._records.put(
                    key, value, if_match=ABSENT if current is None else current.revision, ttl=ttl
                )
                return
            except PreconditionFailed as exc:
                current = exc.current
        raise StoreError(f"rollup {key} changed {MAX_CAS_ATTEMPTS} times while folding")

    async def _refold(self, key: str, after: int, through: int) -> Rollup:
        """The part of rollup `key` from log entries (after, through]: for a rollup another process wrote
        with rounds cut elsewhere."""
        rollups: Rollups = {}
        cursor = str(after)
        while int(cursor) < through:
            page = await self._log.read(cursor, limit=min(READ_BATCH, through - int(cursor)))
            if not page.entries:
                break
            for entry in page.entries:
                fold(rollups, decode_batch(entry.data).events)
            cursor = page.cursor
        name, _, minute = key[len("r/") :].rpartition("/")
        return rollups.get((name, int(minute)), Rollup())

    async def _raise_checkpoint(self, value: bytes, end: int) -> None:
        """Move the checkpoint up to `end` (never down: another process may be ahead)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self._records.get(CHECKPOINT_KEY)
            if current and storage.Checkpoint.FromString(current.value).folded_through >= end:
                return
            try:
                await self._records.put(
                    CHECKPOINT_KEY, value, if_match=ABSENT if current is None else current.revision
                )
                return
            except PreconditionFailed:
                continue

    async def _trim_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_trim or not self._last_commit_time:
            return
        self._next_trim = now + TRIM_SECONDS
        await self._log.trim(min(self._clock() - self._raw_ttl, self._last_commit_time))
