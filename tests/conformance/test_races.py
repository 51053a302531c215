"""Conformance: compare-and-set under contention: no lost update, ever."""

from __future__ import annotations

import asyncio

from microstate.server.store import ABSENT, PreconditionFailed, Record, Store
from tests.conformance.conftest import StoreFactory

WRITERS = 50
MAX_ATTEMPTS = 10 * WRITERS  # a writer that cannot win in this many tries means the store is livelocked


async def _increment(store: Store, key: str) -> tuple[Record, int]:
    """One CAS read-modify-write increment, retried on conflict; returns the record and the conflicts."""
    for conflicts in range(MAX_ATTEMPTS):
        current = await store.get(key)
        count = 0 if current is None else int(current.value)
        expected = ABSENT if current is None else current.revision
        try:
            return await store.put(key, str(count + 1).encode(), if_match=expected), conflicts
        except PreconditionFailed:
            continue
    raise AssertionError(f"no increment succeeded in {MAX_ATTEMPTS} attempts")


async def test_concurrent_incrementers_over_two_connections_lose_no_update(
    store: Store, store_factory: StoreFactory
) -> None:
    other = await store_factory()

    results = await asyncio.gather(*(_increment((store, other)[i % 2], "counter") for i in range(WRITERS)))

    final = await store.get("counter")
    assert final is not None
    assert int(final.value) == WRITERS, "an acknowledged increment was lost"
    written = sorted(int(record.value) for record, _ in results)
    assert written == list(range(1, WRITERS + 1)), "two writers acknowledged the same increment"
    assert len({record.revision for record, _ in results}) == WRITERS
    assert sum(conflicts for _, conflicts in results) > 0, "the writers never raced; the test proved nothing"


async def test_only_one_of_many_concurrent_creates_wins(store: Store, store_factory: StoreFactory) -> None:
    other = await store_factory()

    async def create(writer: int) -> Record | None:
        try:
            return await (store, other)[writer % 2].put("singleton", str(writer).encode(), if_match=ABSENT)
        except PreconditionFailed:
            return None

    outcomes = await asyncio.gather(*(create(writer) for writer in range(20)))

    winners = [record for record in outcomes if record is not None]
    assert len(winners) == 1
    assert await other.get("singleton") == winners[0]


async def test_only_one_of_many_concurrent_conditional_deletes_wins(
    store: Store, store_factory: StoreFactory
) -> None:
    other = await store_factory()
    record = await store.put("k", b"v")

    async def delete(writer: int) -> bool:
        try:
            return await (store, other)[writer % 2].delete("k", if_match=record.revision)
        except PreconditionFailed:
            return False

    outcomes = await asyncio.gather(*(delete(writer) for writer in range(20)))

    assert outcomes.count(True) == 1
