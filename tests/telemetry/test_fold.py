"""The fold is exact: every stored batch lands in the rollups once, whatever crashes or races it meets.

Crashes are folders cancelled at arbitrary points (between or inside their store writes) and started
again; races are several folders (as several server processes would run) over the same log and records.
"""

from __future__ import annotations

import asyncio
import random
import time

from microstate.server.store import Store
from microstate.server.store.log import LogStore
from microstate.server.telemetry.folder import Folder
from microstate.server.telemetry.rollups import CHECKPOINT_KEY, Rollup, rollup_key
from microstate.telemetry.storage.v1 import record_pb2 as storage
from microstate.telemetry.v1 import telemetry_pb2 as pb
from tests.support.processes import until
from tests.telemetry.conftest import MINUTE_NS

BATCHES = 60
PER_BATCH = 20
DAY = 86_400.0


async def append_batches(log: LogStore, minutes: int) -> int:
    """BATCHES entries spread over `minutes` minutes, names "a" and "b"; the number of events."""
    now = time.time_ns()
    for seq in range(BATCHES):
        events = [
            pb.Event(
                name="ab"[i % 2],
                value=1.0,
                time_unix_nano=now - (seq + i) % minutes * MINUTE_NS,
                attributes={"k": str(i % 3)},
            )
            for i in range(PER_BATCH)
        ]
        batch = storage.StoredBatch(producer_id="p", batch_seq=seq, events=events, accepted=PER_BATCH)
        await log.append([batch.SerializeToString()], dedupe_key=f"p:{seq}")
    return BATCHES * PER_BATCH


async def rolled_up(store: Store, minutes: int) -> tuple[int, int]:
    """(total count, count under attribute k) over every rollup of the last `minutes` minutes."""
    this_minute = time.time_ns() // MINUTE_NS
    keys = [rollup_key(name, this_minute - m) for name in "ab" for m in range(minutes + 1)]
    found = await store.batch_get(keys)
    total = by_attribute = 0
    for record in found.values():
        rollup = Rollup.from_storage(storage.MinuteRollup.FromString(record.value))
        total += rollup.total.count
        by_attribute += sum(a.count for a in rollup.by_attribute["k"].values())
    return total, by_attribute


async def checkpoint(store: Store) -> int:
    record = await store.get(CHECKPOINT_KEY)
    return storage.Checkpoint.FromString(record.value).folded_through if record else 0


def folder(log: LogStore, store: Store) -> Folder:
    return Folder(log, store, raw_ttl=DAY, rollup_ttl=DAY)


async def test_folders_cancelled_anywhere_and_racing_fold_every_batch_once(
    log: LogStore, store: Store
) -> None:
    events = await append_batches(log, minutes=7)
    steady = asyncio.create_task(folder(log, store).run())
    rng = random.Random(14)
    crashes = 0
    try:
        while await checkpoint(store) < BATCHES:
            crashing = asyncio.create_task(folder(log, store).run())
            await asyncio.sleep(rng.uniform(0, 0.02))  # where the crash lands, not synchronisation
            crashing.cancel()
            await asyncio.gather(crashing, return_exceptions=True)
            crashes += 1
        await until(lambda: _settled(store, events), within=30, what="every batch folded")
    finally:
        steady.cancel()
        await asyncio.gather(steady, return_exceptions=True)
    assert crashes >= 1
    assert await rolled_up(store, 7) == (events, events)


async def _settled(store: Store, events: int) -> bool:
    return await rolled_up(store, 7) == (events, events)


async def test_a_restarted_folder_refolds_nothing(log: LogStore, store: Store) -> None:
    events = await append_batches(log, minutes=3)
    for _ in range(3):
        task = asyncio.create_task(folder(log, store).run())
        await until(lambda: _at(store, BATCHES), within=30, what="the checkpoint at the head")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await rolled_up(store, 3) == (events, events)


async def _at(store: Store, position: int) -> bool:
    return await checkpoint(store) >= position


async def test_raw_events_are_trimmed_after_their_retention_but_never_before_they_are_folded(
    log: LogStore, store: Store
) -> None:
    events = await append_batches(log, minutes=2)
    short = Folder(log, store, raw_ttl=0.001, rollup_ttl=DAY)  # every entry is past its raw retention
    task = asyncio.create_task(short.run())
    try:
        await until(lambda: _only_last_left(log), within=30, what="the folded entries trimmed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await rolled_up(store, 2) == (events, events)


async def _only_last_left(log: LogStore) -> bool:
    """Trimming stops at the last folded entry's commit time: the entries of the last append stay."""
    page = await log.read(None, limit=BATCHES)
    return 0 < len(page.entries) < BATCHES
