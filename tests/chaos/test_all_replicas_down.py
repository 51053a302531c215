"""kill -9 every profile replica: reads of known keys come from the SDK's snapshots within the latency
budget, writes fail with a typed error; the replicas restart on their ports, and the same client objects
read live again by themselves.

The recovery measured is the time from every replica SERVING again to the client's first live read. It is
bounded by the client's reconnect backoff (`max_reconnect_backoff`) and its circuit breaker's
`reset_timeout`: the short test sets both to 1 s, the chaos runs keep the SDK's defaults (5 s each).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from microstate.client.errors import NoSnapshotError, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.chaos import recovery
from tests.chaos.budget import (
    FAST,
    LATENCY_BUDGET,
    TIMEOUT,
    budget_options,
    read_known_live,
    seconds_to_live_read,
    settings,
    snapshot_reads_within_budget,
)
from tests.support.redis_server import running_redis_server
from tests.support.replicas import every_replica, port_of, start_replica

pytestmark = [pytest.mark.process, pytest.mark.redis]


async def all_replicas_down_and_back(workdir: Path, store: str, **changes: object) -> None:
    replicas = [start_replica(workdir, store), start_replica(workdir, store)]
    try:
        async with ProfileClient(options=budget_options(every_replica(replicas), **changes)) as client:
            created = await read_known_live(client)

            for replica in replicas:
                replica.send(signal.SIGKILL)
            for replica in replicas:
                await asyncio.to_thread(replica.wait)

            slowest = await snapshot_reads_within_budget(client, created)
            with pytest.raises(NoSnapshotError):
                await client.get("never-read")
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await client.create(Profile(user_id="during-outage"))
            write_took = time.monotonic() - started
            assert write_took < TIMEOUT / 2, "a write waited for its deadline"

            ports = [port_of(replica) for replica in replicas]
            replicas[:] = await asyncio.gather(
                *(asyncio.to_thread(start_replica, workdir, store, "--port", port) for port in ports)
            )

            back = await seconds_to_live_read(client)
            await client.create(Profile(user_id="after-outage"))  # writes work again, same client
    finally:
        for replica in replicas:
            replica.stop()
    recovery.record(f"all replicas killed: slowest snapshot read (budget {LATENCY_BUDGET}s)", slowest)
    recovery.record("all replicas killed: a write fails UNAVAILABLE after", write_took)
    recovery.record(f"all replicas killed: first live read after restart ({settings(changes)})", back)


async def test_all_replicas_down_reads_come_from_snapshots_and_the_same_client_goes_live_again(
    tmp_path: Path,
) -> None:
    with running_redis_server() as redis:
        await all_replicas_down_and_back(tmp_path, redis.url, **FAST)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_all_replicas_down_and_back_repeatedly(tmp_path: Path, run: int) -> None:
    with running_redis_server() as redis:
        await all_replicas_down_and_back(tmp_path, redis.url)
