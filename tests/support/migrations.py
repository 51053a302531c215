"""Migrations run while writers keep writing: the harness the migration tests share."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from microstate.server.kit.migrate import migrate, survey
from microstate.server.kit.migrations import Schema
from microstate.server.store.base import Store
from tests.support.processes import until


async def migrate_under_writes(
    store: Store,
    schema: Schema,
    targets: Sequence[int],
    keys: Sequence[str],
    increment: Callable[[int, str], Awaitable[None]],
    *,
    writers: int,
    batch: int,
    settle: float,
) -> Counter[str]:
    """Migrate `store` to each of `targets` in turn while `writers` tasks call `increment(writer, key)` over
    `keys` (each returns once its write is acknowledged); after each run, wait for more writes and check that
    every record is at the target (so the writers write it too). Returns the acknowledged writes per key."""
    acknowledged: Counter[str] = Counter()
    stop = asyncio.Event()

    async def writer(number: int) -> None:
        turn = number
        while not stop.is_set():
            key = keys[turn % len(keys)]
            await increment(number, key)
            acknowledged[key] += 1
            turn += writers + 1

    tasks = [asyncio.create_task(writer(number)) for number in range(writers)]
    try:
        for target in targets:
            await migrate(store, schema, target, batch=batch, settle=settle)
            enough = acknowledged.total() + 2 * len(keys) // 3
            await until(lambda: acknowledged.total() > enough, within=30, what="writes after a run")  # noqa: B023
            assert await survey(store) == Counter({target: len(keys)})
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return acknowledged
