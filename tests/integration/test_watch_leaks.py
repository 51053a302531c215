"""WatchProfiles streams that their clients abandon (cancel, or let the deadline pass) leave nothing behind in
a real server process, on every backend: its asyncio tasks, its idle CPU and, on Redis, its connections come
back to what they were before the streams, and its log stays clean.

The server runs with the task census hook (tests/support/task_census.py), which counts its asyncio tasks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from tests.support import task_census
from tests.support.mongo_server import MongoServer
from tests.support.processes import POLL_INTERVAL, ServerProcess, running_server
from tests.support.redis_server import running_redis_server

pytestmark = pytest.mark.process

STREAMS = 100
SLOW_STREAMS = 600
BATCH = 50
"""Streams open at once; a batch is abandoned before the next one opens."""
DEADLINE = 1.5
"""Seconds the deadline-ended streams live: time for the server to start following the store first."""
SETTLE = 30.0
"""Seconds the server gets to release what the abandoned streams held (a loaded machine is slow)."""
IDLE_SECONDS = 1.0
IDLE_CPU_SLACK = 0.05
"""Share of a core an idle server may use above its baseline (the leak: 0.07 after 100 SQLite streams)."""


@dataclass(frozen=True)
class Backend:
    store_url: str
    connections: Callable[[], int] = lambda: 0
    """How many connections the server holds to its database (0 where they are not counted)."""


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("mongo", marks=pytest.mark.mongo),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend(f"sqlite:///{tmp_path / 'profile.db'}")
    elif request.param == "redis":
        # A redis-server of its own: every connection it has but ours is the microstate server's.
        with running_redis_server() as server, contextlib.closing(redis.Redis(port=server.port)) as client:
            ours = client.client_id()
            yield Backend(server.url, lambda: sum(entry["id"] != ours for entry in client.client_list()))
    else:
        mongo: MongoServer = request.getfixturevalue("mongo_server")
        yield Backend(f"{mongo.url}watchleaks{uuid.uuid4().hex[:12]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int) -> float:
    """The share of a core the process uses over IDLE_SECONDS in which nobody calls it."""
    before = cpu_seconds(pid)
    await asyncio.sleep(IDLE_SECONDS)  # the interval measured, not a synchronisation
    return (cpu_seconds(pid) - before) / IDLE_SECONDS


async def cancelled_stream(stub: profile_pb2_grpc.ProfileServiceStub, user_id: str) -> None:
    """A stream that receives one change, then is cancelled by its client while the server waits for more."""
    call = stub.WatchProfiles(pb.WatchProfilesRequest(user_id_prefix=user_id))
    await call.initial_metadata()  # sent once the server follows the store
    await stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id=user_id)))
    assert (await call.read()).user_id == user_id
    call.cancel()


async def expired_stream(stub: profile_pb2_grpc.ProfileServiceStub) -> None:
    call = stub.WatchProfiles(pb.WatchProfilesRequest(), timeout=DEADLINE)
    await call.initial_metadata()
    assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def abandon_streams(stub: profile_pb2_grpc.ProfileServiceStub, count: int, run: str) -> None:
    """`count` streams, half cancelled by their client and half ended by their deadline, BATCH at a time."""
    for first in range(0, count, BATCH):
        batch = range(first, min(first + BATCH, count))
        await asyncio.gather(
            # Ids of one width: none is a prefix of another ("run-1" of "run-15"), so each stream's prefix
            # watch hears only its own creation.
            *(cancelled_stream(stub, f"{run}-{i:06d}") if i % 2 else expired_stream(stub) for i in batch)
        )


@dataclass
class Usage:
    tasks: collections.Counter[str]
    """The server's asyncio tasks, counted by coroutine."""
    connections: int

    def within(self, baseline: Usage) -> bool:
        return self.tasks.total() <= baseline.tasks.total() and self.connections <= baseline.connections

    def most(self, other: Usage) -> Usage:
        """The higher of two samples: a driver's own tasks come and go (a Mongo getMore runs two)."""
        tasks = max(self.tasks, other.tasks, key=collections.Counter.total)
        return Usage(tasks, max(self.connections, other.connections))

    def growth(self, baseline: Usage) -> str:
        grown = dict(self.tasks - baseline.tasks)
        return f"tasks grew by {grown}; connections {baseline.connections} -> {self.connections}"


def usage(server: ServerProcess, workdir: Path, backend: Backend) -> Usage:
    return Usage(task_census.take_census(server, workdir), backend.connections())


async def released(server: ServerProcess, workdir: Path, backend: Backend, baseline: Usage) -> None:
    """Return once the server's usage is back within `baseline`; fail if it is not within SETTLE seconds."""
    deadline = time.monotonic() + SETTLE
    while not (now := await asyncio.to_thread(usage, server, workdir, backend)).within(baseline):
        assert time.monotonic() < deadline, f"not released within {SETTLE}s: {now.growth(baseline)}"
        await asyncio.sleep(POLL_INTERVAL)  # between checks of the condition


async def check_abandoned_streams_leave_nothing_behind(backend: Backend, workdir: Path, count: int) -> None:
    flags = ("--store", backend.store_url)
    with running_server("profile", workdir, *flags, hooks=[task_census.HOOK]) as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            # A few streams first: they start what the store's watches share (Mongo's change stream).
            await abandon_streams(stub, 4, "warm-up")
            before = await asyncio.to_thread(usage, server, workdir, backend)
            baseline_cpu = await idle_cpu(server.pid)
            baseline = before.most(await asyncio.to_thread(usage, server, workdir, backend))

            await abandon_streams(stub, count, "run")

            await released(server, workdir, backend, baseline)
            assert await idle_cpu(server.pid) <= baseline_cpu + IDLE_CPU_SLACK
    log = server.errors()
    assert "aclose(): asynchronous generator is already running" not in log
    assert not [record for record in server.log_records() if record["level"] in {"ERROR", "CRITICAL"}], log


async def test_abandoned_watch_streams_release_their_tasks_connections_and_cpu(
    backend: Backend, tmp_path: Path
) -> None:
    await check_abandoned_streams_leave_nothing_behind(backend, tmp_path, STREAMS)


@pytest.mark.slow
async def test_hundreds_of_abandoned_watch_streams_release_everything(
    backend: Backend, tmp_path: Path
) -> None:
    await check_abandoned_streams_leave_nothing_behind(backend, tmp_path, SLOW_STREAMS)
