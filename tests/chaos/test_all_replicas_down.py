"""kill -9 every profile replica: reads of known keys come from the SDK's snapshots within the latency
budget, writes fail with a typed error; the replicas restart on their ports, and the same client objects
read live again by themselves.

The recovery measured is the time from every replica SERVING again to the client's first live read. It is
bounded by the client's reconnect backoff (`max_reconnect_backoff`) and its circuit breaker's
`reset_timeout`: the short test sets both to 1 s, the chaos runs keep the SDK's defaults (5 s each).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from pathlib import Path

import pytest

from microstate.client import BreakerOptions, ClientOptions
from microstate.client.errors import NoSnapshotError, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient, Source
from tests.chaos import recovery
from tests.support.processes import ServerProcess
from tests.support.redis_server import running_redis_server
from tests.support.replicas import every_replica, port_of, start_replica

pytestmark = [pytest.mark.process, pytest.mark.redis]

LATENCY_BUDGET = 0.5
MARGIN = 1.0
"""Added to the budget in timing assertions: the machine is shared, and the budget is what is tested, not
the scheduler. A read that waited for its 10 s deadline would still fail."""
TIMEOUT = 10.0
KNOWN = [f"known-{n}" for n in range(5)]

FAST = dict(breaker=BreakerOptions(reset_timeout=1.0), max_reconnect_backoff=1.0)
"""The short test's recovery settings; the chaos runs use the SDK's defaults."""


def client_options(replicas: list[ServerProcess], **changes: object) -> ClientOptions:
    options = ClientOptions(
        target=every_replica(replicas),
        timeout=TIMEOUT,
        latency_budget=LATENCY_BUDGET,
        channel_options=(("grpc.lb_policy_name", "round_robin"),),
    )
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]


async def all_replicas_down_and_back(workdir: Path, store: str, **changes: object) -> None:
    replicas = [start_replica(workdir, store), start_replica(workdir, store)]
    try:
        async with ProfileClient(options=client_options(replicas, **changes)) as client:
            created = {key: await client.create(Profile(user_id=key, display_name=key)) for key in KNOWN}
            for key in KNOWN:
                assert (await client.get(key)).source is Source.LIVE

            for replica in replicas:
                replica.send(signal.SIGKILL)
            for replica in replicas:
                await asyncio.to_thread(replica.wait)

            slowest = 0.0
            for _ in range(3):  # several rounds: the breaker opens on the way, and reads still come back
                for key in KNOWN:
                    read, took = await recovery.timed(client.get(key))
                    assert read.source is Source.SNAPSHOT and read.stale, read
                    assert read.value == created[key]
                    assert took < LATENCY_BUDGET + MARGIN, f"a snapshot read took {took:.2f}s"
                    slowest = max(slowest, took)
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

            async def live() -> bool:
                return (await client.get(KNOWN[0])).source is Source.LIVE

            back = await recovery.seconds_until(
                live, since=time.monotonic(), within=30, what="a live read from the same client"
            )
            await client.create(Profile(user_id="after-outage"))  # writes work again, same client
    finally:
        for replica in replicas:
            replica.stop()
    defaults = "fast options" if changes else "SDK defaults"
    recovery.record(f"all replicas killed: slowest snapshot read (budget {LATENCY_BUDGET}s)", slowest)
    recovery.record("all replicas killed: a write fails UNAVAILABLE after", write_took)
    recovery.record(f"all replicas killed: first live read after restart ({defaults})", back)


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
