"""`client.stats()`: what a client read live, from snapshots and from its near-cache, and what it wrote,
counted against a real profile server that is stopped and started under it."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from microstate.client import BreakerState, ClientStats, NearCacheOptions
from microstate.client.errors import NoSnapshotError, NotFound, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from tests.client.conftest import breaker_options, fast_options
from tests.client.harness import RestartableServer, eventually


def counts(stats: ClientStats) -> dict[str, object]:
    return {field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)}


async def test_stats_count_reads_by_source_and_writes_by_outcome(real_server: RestartableServer) -> None:
    async with ProfileClient(options=breaker_options(real_server.target, reset_timeout=60)) as client:
        await client.create(Profile(user_id="u1"))
        await client.get("u1")
        await client.batch_get(["u1", "u1"])  # one key once
        with pytest.raises(NotFound):
            await client.get("nobody")
        await real_server.stop()
        await client.get("u1")  # the snapshot
        with pytest.raises(NoSnapshotError):
            await client.get("never-read")
        with pytest.raises(Unavailable):
            await client.create(Profile(user_id="u2"))
        await client.get("u1")  # the breaker is open now: the snapshot, with no call
        assert counts(client.stats()) == {
            "live_reads": 2,
            "snapshot_reads": 2,
            "cached_reads": 0,
            "failed_reads": 2,
            "writes": 1,
            "failed_writes": 1,
            "breaker": BreakerState.OPEN,
            "snapshot_entries": 1,
        }


async def test_near_cache_hits_are_counted_as_cached(real_server: RestartableServer) -> None:
    options = fast_options(real_server.target, near_cache=NearCacheOptions(max_staleness=5.0))
    async with ProfileClient(options=options) as client:
        await client.create(Profile(user_id="u1"))
        await eventually(lambda: client.get("u1"), lambda _: client.stats().cached_reads > 0)
        before = client.stats()
        for _ in range(10):
            await client.get("u1")
        after = client.stats()
    assert after.cached_reads - before.cached_reads == 10
    assert after.live_reads == before.live_reads


async def test_counts_are_exact_across_threads(real_server: RestartableServer) -> None:
    def from_threads() -> ClientStats:
        with SyncProfileClient(options=fast_options(real_server.target)) as client:
            client.create(Profile(user_id="u1"))
            threads = [
                threading.Thread(target=lambda: [client.get("u1") for _ in range(50)]) for _ in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return client.stats()

    stats = await asyncio.to_thread(from_threads)
    assert (stats.live_reads, stats.writes) == (400, 1)
