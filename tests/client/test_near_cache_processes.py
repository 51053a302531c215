"""The profile near-cache against a real `microstate serve profile` process that is killed (SIGKILL): the
cache goes STALE, serves nothing once the break is older than max_staleness, and reads fall back as they
would without it (to the snapshot)."""

from __future__ import annotations

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
