"""Latency instead of failure: a slow store, a partition between the server and its store, and one
between the SDK and its server. Each time the SDK's latency budget holds: reads of known keys come from
snapshots within the budget (plus a margin), never waiting for their deadline, and go live again once the
path is fast again.

The faults are injected by a TCP proxy (tests/support/tcp_proxy.py): between the server and its redis it
delays every chunk (a slow store that still answers, within the server's 1 s store timeout) or holds every
byte; between the client and the server it holds every byte. A held connection stays open (a partition: no
refusal, no reset, only silence, which only a timeout can detect).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from microstate.client.errors import DeadlineExceeded, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient, Source
from tests.chaos import recovery
from tests.chaos.budget import (
    FAST,
    KNOWN,
    LATENCY_BUDGET,
    TIMEOUT,
    budget_options,
    read_known_live,
    seconds_to_live_read,
    settings,
    snapshot_reads_within_budget,
)
from tests.support.processes import ServerProcess
from tests.support.redis_server import running_redis_server
from tests.support.replicas import port_of, start_replica
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.process, pytest.mark.redis]

STORE_DELAY = 0.3
"""Seconds added each way between server and redis: a store round trip of 0.6 s or more, slower than the
budget but within the server's store timeout (1 s), so the store is slow, not failing."""
WRITE_TIMEOUT = 1.0


@contextlib.contextmanager
def behind_a_store_proxy(workdir: Path) -> Iterator[tuple[ServerProcess, TcpProxy]]:
    """A profile server whose redis it reaches through a TcpProxy."""
    with running_redis_server() as redis, TcpProxy(redis.port) as proxy:
        server = start_replica(workdir, f"redis://{proxy.address}/0")
        try:
            yield server, proxy
        finally:
            server.stop()


async def slow_store(workdir: Path, **changes: object) -> None:
    with behind_a_store_proxy(workdir) as (server, proxy):
        async with (
            ProfileClient(options=budget_options(server.target, **changes)) as client,
            ProfileClient(options=budget_options(server.target, latency_budget=None)) as patient,
        ):
            created = await read_known_live(client)
            proxy.delay = STORE_DELAY
            slowest = await snapshot_reads_within_budget(client, created)
            # A client without a budget (and without a snapshot of the key) waits for the live answer:
            # the store was slow, not down, and the budget is what kept the reads above fast.
            control, took = await recovery.timed(patient.get(KNOWN[0]))
            assert control.source is Source.LIVE and took >= 2 * STORE_DELAY, (control.source, took)
            proxy.delay = 0.0
            back = await seconds_to_live_read(client)
    recovery.record(f"slow store: slowest snapshot read (budget {LATENCY_BUDGET}s)", slowest)
    recovery.record(f"slow store: first live read once the store is fast ({settings(changes)})", back)


async def store_partition(workdir: Path, **changes: object) -> None:
    with behind_a_store_proxy(workdir) as (server, proxy):
        async with ProfileClient(options=budget_options(server.target, **changes)) as client:
            created = await read_known_live(client)
            proxy.partition()
            slowest = await snapshot_reads_within_budget(client, created)
            # The server refuses it, STORE_UNAVAILABLE, within its store timeout (Redis: 1 s).
            refused, took = await recovery.timed(recovery.failure(client.create(Profile(user_id="refused"))))
            assert isinstance(refused, Unavailable) and refused.reason == "STORE_UNAVAILABLE", refused
            assert took < TIMEOUT / 2, f"a write was refused after {took:.2f}s"
            proxy.heal()
            back = await seconds_to_live_read(client)
            # The held command reaches redis when the path heals, after the write was refused.
            applied = [p.user_id async for p in client.list_all("refused")]
    recovery.record(f"store partition: slowest snapshot read (budget {LATENCY_BUDGET}s)", slowest)
    recovery.record("store partition: a write refused STORE_UNAVAILABLE after", took)
    recovery.record(f"store partition: first live read once healed ({settings(changes)})", back)
    recovery.count("store partition: refused write applied after the heal", len(applied))


async def network_partition(workdir: Path, **changes: object) -> None:
    with running_redis_server() as redis:
        server = start_replica(workdir, redis.url)
        try:
            with TcpProxy(int(port_of(server))) as proxy:
                async with ProfileClient(options=budget_options(proxy.address, **changes)) as client:
                    created = await read_known_live(client)
                    proxy.partition()
                    slowest = await snapshot_reads_within_budget(client, created)
                    with pytest.raises(DeadlineExceeded):
                        await client.create(Profile(user_id="cut-off"), timeout=WRITE_TIMEOUT)
                    proxy.heal()
                    back = await seconds_to_live_read(client)
                    # The write was held, not dropped: it may have been applied after its caller gave up.
                    applied = [p.user_id async for p in client.list_all("cut-off")]
        finally:
            server.stop()
    recovery.record(f"network partition: slowest snapshot read (budget {LATENCY_BUDGET}s)", slowest)
    recovery.record(f"network partition: first live read once healed ({settings(changes)})", back)
    recovery.count("network partition: timed-out write applied after the heal", len(applied))


async def test_a_slow_store_keeps_reads_within_the_latency_budget(tmp_path: Path) -> None:
    await slow_store(tmp_path, **FAST)


async def test_a_store_partition_keeps_reads_within_the_latency_budget(tmp_path: Path) -> None:
    await store_partition(tmp_path, **FAST)


async def test_a_network_partition_keeps_reads_within_the_latency_budget(tmp_path: Path) -> None:
    await network_partition(tmp_path, **FAST)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_a_slow_store_repeatedly(tmp_path: Path, run: int) -> None:
    await slow_store(tmp_path)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_a_store_partition_repeatedly(tmp_path: Path, run: int) -> None:
    await store_partition(tmp_path)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_a_network_partition_repeatedly(tmp_path: Path, run: int) -> None:
    await network_partition(tmp_path)
