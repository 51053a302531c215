"""`microstate migrate NAME --partitions P`: change the partition count of a microstate on a Redis Cluster
online, as a declared store-level migration run by the kit's loop (kit/migrate.py `run_passes`).

The Conversion moves the keys the old layout still holds, a batch at a time in key order; the state cell
keeps the run's SchemaState (its `version` the target partition count, `source` the old one) next to the
namespace's layout descriptor, not among the records (a slice must not list it). The store does the rest
(store/redis_cluster_repartition.py): begin (record the next layout, wait `settle`, arm the partitions),
the moves, and the finish (switch, wait `settle`, delete the old layout's logs and indexes). A run that
dies resumes from its last saved batch; a second run takes the state over and the first stops before
its next batch, as record migrations do. Going back is the same command with the old count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from microstate.server.kit.migrate import Batch, MigrationConflict, Progress, run_passes
from microstate.server.kit.migrations import SchemaState
from microstate.server.store.redis_cluster import LAYOUT_REFRESH, RedisClusterStore, check_partitions
from microstate.server.store.redis_cluster_layout import LayoutChanged
from microstate.server.store.redis_cluster_repartition import (
    arm,
    begin,
    finish,
    layouts,
    move_batch,
    read_run,
    save_run,
)


class PartitionConversion:
    """One batch of a pass: the next keys the old layout still holds, moved to the next layout."""

    def __init__(self, store: RedisClusterStore) -> None:
        self.store = store

    async def convert_batch(self, after: str | None, limit: int) -> Batch:
        examined, moved, next_after = await move_batch(self.store, after, limit)
        return Batch(examined, moved, next_after)


class RunCell:
    """The run's SchemaState in the store's own key beside the layout descriptor."""

    def __init__(self, store: RedisClusterStore) -> None:
        self.store = store

    async def read(self) -> tuple[SchemaState, int | None]:
        raw, token = await read_run(self.store)
        return (SchemaState() if raw is None else SchemaState.decode(raw)), token

    async def save(self, state: SchemaState, token: int | None) -> int:
        saved = await save_run(self.store, state.encode(), token)
        if saved is None:
            raise MigrationConflict("another repartition run changed the run's state: only one may run")
        return saved


async def repartition(
    store: RedisClusterStore,
    partitions: int,
    *,
    batch: int,
    pause: float = 0.0,
    settle: float,
    report: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Bring the namespace of `store` to `partitions` partitions online; resumes a run to the same count
    that stopped. ValueError for a count out of range, or another count while a run is under way (finish
    that one first, then run back); MigrationConflict when another run takes over meanwhile."""
    check_partitions(partitions)
    if batch < 1 or pause < 0:
        raise ValueError("batch must be at least 1, pause at least 0")
    if settle <= LAYOUT_REFRESH:
        raise ValueError(
            f"settle must be more than {LAYOUT_REFRESH:g}s: how long a server goes on with a layout it read"
        )
    cell = RunCell(store)
    state, token = await cell.read()
    seen = await layouts(store)
    if seen.next is None and seen.dropped is not None:
        await _finish(store, settle)  # the cleanup of a run that died after its switch
        seen = await layouts(store)
    moving_to = seen.next.partitions if seen.next is not None else None
    if moving_to is not None and moving_to != partitions:
        raise ValueError(
            f"a repartition to {moving_to} partitions is under way: finish it (--partitions {moving_to}),"
            f" then run to {partitions}"
        )
    resumed = moving_to is not None
    if not resumed:
        if seen.current.partitions == partitions:
            return Progress(SchemaState(partitions), 0, resumed=False)
        state = SchemaState(partitions, seen.current.partitions)
        token = await cell.save(state, token)
        try:
            await begin(store, partitions)
        except LayoutChanged as exc:
            raise MigrationConflict(str(exc)) from None
        await asyncio.sleep(settle)  # every server lists and reads both layouts before a key moves
    else:
        if not (state.running and state.version == partitions):
            # The run died before its first save or after its last: this one goes through every key again.
            state = SchemaState(partitions, seen.current.partitions)
            token = await cell.save(state, token)
        await asyncio.sleep(settle)  # the run may have died right after its begin, before its settle
    await arm(store)
    progress = await run_passes(
        cell,
        PartitionConversion(store),
        state,
        token,
        batch=batch,
        pause=pause,
        report=report,
        resumed=resumed,
    )
    await _finish(store, settle)
    return progress


async def _finish(store: RedisClusterStore, settle: float) -> None:
    try:
        await finish(store, settle)
    except LayoutChanged as exc:
        raise MigrationConflict(str(exc)) from None
