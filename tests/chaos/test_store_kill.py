"""kill -9 the store (a real redis-server) under a profile server: calls fail UNAVAILABLE fast, well within
their deadline, and health turns NOT_SERVING; redis restarts on the same port (its append-only file
fsynced on every write, so acknowledged writes survive) and the same server recovers by itself.

Recovery is measured from redis answering again to the server's health SERVING (it pings its store every
--health-interval-seconds: 0.2 s in the short test, the default 5 s in the chaos runs) and to the first
call that succeeds (the server reconnects to redis at its next call, whatever its health says).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from microstate.client.errors import MicrostateError, NoSnapshotError, Unavailable
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.chaos import recovery
from tests.support.processes import health_status, until
from tests.support.redis_server import running_redis_server
from tests.support.replicas import balanced_options, start_replica

pytestmark = [pytest.mark.process, pytest.mark.redis]

TIMEOUT = 10.0
FAST = TIMEOUT / 2
"""A failure "fast" comes well within the deadline: it was an answer, not a deadline waited out."""
FAST_HEALTH = ("--health-interval-seconds", "0.2")
HEALTH_WITHIN = 20.0
"""Longer than a health interval plus a ping timeout (5 + 3 s by default)."""


def health_is(target: str, wanted: str) -> Callable[[], Awaitable[bool]]:
    """A condition for `until`: the server's overall health status is `wanted`."""

    async def check() -> bool:
        return await asyncio.to_thread(health_status, target) == wanted

    return check


async def store_killed_and_back(workdir: Path, *flags: str) -> None:
    with running_redis_server() as redis:
        server = start_replica(workdir, redis.url, *flags)
        try:
            async with ProfileClient(options=balanced_options([server], timeout=TIMEOUT)) as client:
                created = await client.create(Profile(user_id="known", display_name="Ada"))

                await asyncio.to_thread(redis.kill)
                write, write_took = await recovery.timed(
                    recovery.failure(client.create(Profile(user_id="lost")))
                )
                assert isinstance(write, Unavailable) and write.reason == "STORE_UNAVAILABLE", write
                assert write_took < FAST, f"a write failed after {write_took:.2f}s"
                read, read_took = await recovery.timed(recovery.failure(client.get("known")))
                assert isinstance(read, NoSnapshotError) and read.code.name == "UNAVAILABLE", read
                assert read_took < FAST, f"a read failed after {read_took:.2f}s"
                await until(
                    health_is(server.target, "NOT_SERVING"), within=HEALTH_WITHIN, what="health NOT_SERVING"
                )

                await asyncio.to_thread(redis.start)  # same port, same data directory
                since = time.monotonic()

                async def answers() -> bool:
                    return not isinstance(await recovery.failure(client.get("known")), MicrostateError)

                serving, first_call = await asyncio.gather(
                    recovery.seconds_until(
                        health_is(server.target, "SERVING"), since=since, within=HEALTH_WITHIN, what="SERVING"
                    ),
                    recovery.seconds_until(answers, since=since, within=30, what="a call that succeeds"),
                )
                assert (await client.get("known")).value == created
        finally:
            server.stop()
    recovery.record("store killed: a write fails UNAVAILABLE after", write_took)
    recovery.record("store killed: a read fails UNAVAILABLE after (4 attempts)", read_took)
    interval = flags[-1] if flags else "5"
    recovery.record(
        f"store killed: health SERVING after redis is back (health interval {interval}s)", serving
    )
    recovery.record("store killed: first successful call after redis is back", first_call)


async def test_killing_the_store_fails_calls_fast_and_the_server_recovers_by_itself(tmp_path: Path) -> None:
    await store_killed_and_back(tmp_path, *FAST_HEALTH)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_killing_the_store_repeatedly(tmp_path: Path, run: int) -> None:
    await store_killed_and_back(tmp_path)
