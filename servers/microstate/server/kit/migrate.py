"""Running a declared migration online: `microstate migrate SLICE --to N` (kit/migrations.py declares them).

A run moves the namespace's write version to N first (every server's VersionedStore reads it within its
`refresh` interval; the run waits `settle` seconds for that), then converts the records in key order, a
batch at a time. Each record is converted by a compare-and-set on its revision: a write that lands before
is converted with the rest of its record, a write that lands after is already at version N, and a
conversion that loses the race reads the record again and converts what it finds. After every batch the
run stores its progress (the last key and the count) in the schema state, so a run that dies resumes after
the last batch it saved. Only one run may go on at a time, but a run cannot tell a live run from a dead
one: a new run takes the state over (that is how a run killed on the way up is rolled back), and the run
it took it from stops with MigrationConflict before its next batch. A batch already under way when that
happens may leave up to `batch` records at its version; they stay readable, and the next run converts
them. A second pass then checks every record again (a write that read the old write
version just before the move can land behind the first pass), and the state is marked settled at N.

The loop (`run_passes`) is written against `Conversion`, one batch of one pass, and `StateCell`, where the
run keeps its SchemaState: `RecordConversion` re-encodes values through the Store protocol, so it works on
every backend alike, and keeps its state in the namespace's schema record. A store-level change is another
Conversion with a cell of its own, run by the same loop with the same progress, resume and takeover: the
Redis Cluster store's repartition (repartitioning.py) is one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from microstate.server.kit.migrations import SCHEMA_KEY, Schema, SchemaState, read_state, stored_version
from microstate.server.store.base import ABSENT, PreconditionFailed, Record, Store

DEFAULT_BATCH: Final = 100
DEFAULT_SETTLE: Final = 3.0
"""Seconds between moving the write version and converting: every server's refresh (1 s by default) and
the writes it had in flight fit in it."""


class MigrationConflict(Exception):
    """Another run changed the schema state under this one (two runs at once): this one stops."""


@dataclass(frozen=True)
class Batch:
    examined: int
    converted: int
    next_after: str | None
    """Where the next batch starts; None when this pass has seen every record."""


class Conversion(Protocol):
    async def convert_batch(self, after: str | None, limit: int) -> Batch:
        """Bring up to `limit` records after key `after` (None: from the first) to the target version."""
        ...


class StateCell(Protocol):
    """Where a run keeps its SchemaState, written by compare-and-set on a token (None: never written)."""

    async def read(self) -> tuple[SchemaState, int | None]: ...

    async def save(self, state: SchemaState, token: int | None) -> int:
        """Store `state` if the cell is still at `token`, the new token; MigrationConflict if not."""
        ...


class RecordCell:
    """The schema state in the namespace's reserved record SCHEMA_KEY."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def read(self) -> tuple[SchemaState, int | None]:
        return await read_state(self.store)

    async def save(self, state: SchemaState, token: int | None) -> int:
        try:
            record = await self.store.put(
                SCHEMA_KEY, state.encode(), if_match=ABSENT if token is None else token
            )
        except PreconditionFailed:
            raise MigrationConflict(
                "another migration run changed the schema state: only one may run"
            ) from None
        return record.revision


class RecordConversion:
    """Re-encodes each record's value to `target` with a compare-and-set on its revision."""

    def __init__(self, store: Store, schema: Schema, target: int) -> None:
        self.store = store
        self.schema = schema
        self.target = target

    async def convert_batch(self, after: str | None, limit: int) -> Batch:
        page = await self.store.list("", after=after, limit=limit)
        records = [record for record in page.records if record.key != SCHEMA_KEY]
        converted = 0
        for record in records:
            converted += await self._convert(record)
        return Batch(len(records), converted, page.next_after)

    async def _convert(self, record: Record | None) -> bool:
        while record is not None and stored_version(record.value) != self.target:
            ttl = None
            if record.expires_at is not None:
                ttl = record.expires_at - time.time()
                if ttl <= 0:
                    return False  # expired: it reads as absent and goes away by itself
            value = self.schema.restamp(record.value, self.target)
            try:
                await self.store.put(record.key, value, if_match=record.revision, ttl=ttl)
                return True
            except PreconditionFailed as exc:
                record = exc.current  # written (or deleted) meanwhile: convert what is there now
        return False


@dataclass(frozen=True)
class Progress:
    state: SchemaState
    examined: int
    """Records examined by this run so far."""
    resumed: bool
    """This run continued one that stopped before it finished."""


async def survey(store: Store) -> Counter[int]:
    """How many records are stored at each version (a full scan, no writes)."""
    versions: Counter[int] = Counter()
    after: str | None = None
    while True:
        page = await store.list("", after=after, limit=500)
        versions.update(stored_version(record.value) for record in page.records if record.key != SCHEMA_KEY)
        if page.next_after is None:
            return versions
        after = page.next_after


async def migrate(
    store: Store,
    schema: Schema,
    target: int,
    *,
    batch: int = DEFAULT_BATCH,
    pause: float = 0.0,
    settle: float = DEFAULT_SETTLE,
    report: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Bring every record of the namespace in `store` (the raw store, not a VersionedStore) to version
    `target` online (see the module docstring); `report` sees the progress after every batch. Resumes a run
    to the same target that stopped; a run to another target starts over (it converts whatever it finds).
    ValueError for an undeclared target; MigrationConflict when another run moves the state meanwhile."""
    schema.check(target)
    if batch < 1 or pause < 0 or settle < 0:
        raise ValueError("batch must be at least 1, pause and settle at least 0")
    cell = RecordCell(store)
    state, revision = await cell.read()
    schema.check(state.version)
    resumed = state.running and state.version == target
    if not resumed:
        if state.version == target:  # settled there already: one checking pass finds any straggler
            state = SchemaState(target, target, sweep=True)
        else:
            state = SchemaState(target, state.version)
        revision = await cell.save(state, revision)
        await asyncio.sleep(settle)  # servers read the new write version before the first conversion
    conversion = RecordConversion(store, schema, target)
    return await run_passes(
        cell, conversion, state, revision, batch=batch, pause=pause, report=report, resumed=resumed
    )


async def run_passes(
    cell: StateCell,
    conversion: Conversion,
    state: SchemaState,
    token: int | None,
    *,
    batch: int,
    pause: float,
    report: Callable[[Progress], None],
    resumed: bool,
) -> Progress:
    """Run `conversion` from where `state` stands (a running state, saved in `cell` at `token`) to the end:
    batches of the first pass, then a checking pass, saving the progress after every batch; the state is
    settled at its version when both are done. MigrationConflict when another run takes the cell over."""
    target = state.version
    examined = 0
    revision = token
    while True:
        await _still_ours(cell, revision)
        done = await conversion.convert_batch(state.after, batch)
        examined += done.examined
        converted = state.converted + done.converted
        if done.next_after is not None:
            state = replace(state, after=done.next_after, converted=converted)
        elif not state.sweep:
            state = replace(state, after=None, converted=converted, sweep=True)
        else:
            state = SchemaState(target, converted=converted)
        revision = await cell.save(state, revision)
        progress = Progress(state, examined, resumed)
        report(progress)
        if not state.running:
            return progress
        if pause:
            await asyncio.sleep(pause)  # throttle: leave the store's capacity to the servers


async def _still_ours(cell: StateCell, revision: int | None) -> None:
    """MigrationConflict if another run has written the state since this one last did."""
    _, current = await cell.read()
    if current != revision:
        raise MigrationConflict("another migration run took the schema state over: this one stops")
