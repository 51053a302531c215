"""The profile near-cache against a real `microstate serve profile` process that is killed (SIGKILL): the
cache goes STALE, serves nothing once the break is older than max_staleness, and reads fall back as they
would without it (to the snapshot)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from microstate.client import Liveness, NearCacheOptions, Source
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.client.conftest import fast_options
from tests.client.harness import eventually
from tests.support.processes import running_server, until

pytestmark = pytest.mark.process

MAX_STALENESS = 0.3
WITHIN = 15.0


async def test_a_killed_server_stops_the_cache_serving_past_max_staleness(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'profile.db'}"
    options = fast_options("", near_cache=NearCacheOptions(max_staleness=MAX_STALENESS))
    with running_server("profile", tmp_path, "--store", store, "--drain-seconds", "0") as server:
        async with ProfileClient(server.target, options=options) as client:

            def liveness() -> Liveness:
                status = client.near_cache_status()
                assert status is not None
                return status.liveness

            await client.create(Profile(user_id="ada"))
            await client.get("ada")  # starts the watch
            await until(lambda: liveness() is Liveness.LIVE, within=WITHIN, what="the watch")
            await eventually(
                lambda: client.get("ada"), lambda read: read.source is Source.CACHE, within=WITHIN
            )

            server.process.kill()
            server.process.wait()
            await until(lambda: liveness() is Liveness.STALE, within=WITHIN, what="the break")
            served: list[tuple[float, Source]] = []
            deadline = time.monotonic() + WITHIN
            while not served or served[-1][1] is not Source.SNAPSHOT:
                assert time.monotonic() < deadline, served[-5:]
                age = client.near_cache_status().age  # type: ignore[union-attr]
                served.append((age, (await client.get("ada")).source))
            assert not [age for age, source in served if source is Source.CACHE and age > MAX_STALENESS]


@pytest.mark.parametrize(
    "keepalive",
    [1.0, pytest.param(None, marks=pytest.mark.slow)],  # the control waits out a fixed time: slow only
    ids=["keepalive", "no-keepalive"],
)
async def test_keepalive_ends_a_watch_whose_server_went_silent(
    tmp_path: Path, keepalive: float | None
) -> None:
    """A server that stops answering without closing anything (SIGSTOP: the kernel still ACKs) leaves the
    watch hanging unless the client pings: with keepalive the stream fails and the SDK reconnects; the
    control without it stays 'connected' to a dead server."""
    store = f"sqlite:///{tmp_path / 'profile.db'}"
    near_cache = NearCacheOptions(max_staleness=MAX_STALENESS, heartbeat_interval=3600)  # no heartbeat help
    options = fast_options("", near_cache=near_cache, keepalive_time=keepalive, keepalive_timeout=1.0)
    with running_server(
        "profile", tmp_path, "--store", store, "--min-ping-interval-seconds", "0.5"
    ) as server:
        async with ProfileClient(server.target, options=options) as client:
            await client.create(Profile(user_id="ada"))
            await client.get("ada")  # starts the watch
            replica = client._core.near_cache._replica  # type: ignore[union-attr]
            await until(lambda: replica.connected, within=WITHIN, what="the watch")
            server.process.send_signal(signal.SIGSTOP)
            try:
                if keepalive is None:
                    # The control: nothing can be awaited for something that must not happen, so it waits
                    # out four times what the keepalive case needs (not a synchronisation).
                    await asyncio.sleep(4 * (1.0 + 1.0))
                    assert replica.connected
                else:
                    await until(lambda: not replica.connected, within=WITHIN, what="the dead stream to end")
            finally:
                server.process.send_signal(signal.SIGCONT)
