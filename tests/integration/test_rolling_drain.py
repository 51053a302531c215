"""Rolling drains under load lose no call: two profile replicas on one SQLite file, one SDK client dialling
both replicas, readers and writers running while a replica the client uses is drained (SIGTERM) and restarted.

A call that races the listener closing reaches the draining server but no handler, and gRPC answers it
CANCELLED; the SDK retries it on the other replica (see microstate.server.runtime and
microstate.client._channel). Snapshots are off, so a read must be answered live to count as a success, and
every write is to a new key, so the writes acknowledged can all be looked up afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from microstate.client import BreakerOptions, ClientOptions, SnapshotOptions
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.hooked_server import FIRST_CALL
from tests.support.processes import ServerProcess, start_server, until

pytestmark = pytest.mark.process

POLICIES = ["pick_first", "round_robin"]
WRITERS = READERS = 16
CALL_TIMEOUT = 10.0
"""Longer than a drain and a restart take: a call fails by an error, not by waiting one out."""
FLAGS = ("--drain-seconds", "0.5", "--grace-seconds", "5")
HOOKS = ("--log-first-call",)


@dataclass
class Load:
    acknowledged: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def load(client: ProfileClient) -> AsyncIterator[Load]:
    """READERS tasks reading one profile and WRITERS tasks creating new ones until the block ends."""
    outcome, stop = Load(), asyncio.Event()
    await client.create(Profile(user_id="seed", display_name="Seed"))

    async def write(writer: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            user_id = f"w{writer}-{n}"
            try:
                await client.create(Profile(user_id=user_id, display_name="W"))
            except Exception as error:  # every failure counts, whatever its kind
                outcome.failures.append(f"create {user_id}: {type(error).__name__}: {error}")
            else:
                outcome.acknowledged.append(user_id)

    async def read() -> None:
        while not stop.is_set():
            try:
                await client.get("seed")
            except Exception as error:
                outcome.failures.append(f"get: {type(error).__name__}: {error}")

    tasks = [asyncio.create_task(write(i)) for i in range(WRITERS)]
    tasks += [asyncio.create_task(read()) for _ in range(READERS)]
    try:
        yield outcome
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def serves_our_client(replica: ServerProcess) -> bool:
    """The replica got a call from the client since it started (only the client calls the profile service)."""
    return any(record["msg"] == FIRST_CALL for record in replica.log_records())


def start_replica(workdir: Path, store: str, *flags: str) -> ServerProcess:
    return start_server("profile", workdir, "--store", store, *FLAGS, *flags, hooks=HOOKS)


def drain_and_restart(replica: ServerProcess, workdir: Path, store: str) -> ServerProcess:
    replica.send(signal.SIGTERM)
    assert replica.wait() == 0, replica.describe()
    return start_replica(workdir, store, "--port", replica.target.rpartition(":")[2])


async def rolling_drains(workdir: Path, policy: str, drains: int) -> None:
    store = f"sqlite:///{workdir / 'profiles.db'}"
    replicas = [start_replica(workdir, store), start_replica(workdir, store)]
    options = ClientOptions(
        replicas=(replicas[0].target, replicas[1].target),
        timeout=CALL_TIMEOUT,
        snapshot=SnapshotOptions(max_entries=0),
        breaker=BreakerOptions(failure_threshold=None),
        max_reconnect_backoff=0.5,  # round_robin takes a restarted replica back soon
        load_balancing=policy,
    )
    try:
        async with ProfileClient(options=options) as client:
            async with load(client) as outcome:
                for n in range(drains):
                    # pick_first stays on the replica that took over, so that one is drained next; round_robin
                    # uses both, so the same one is drained each time, once it is back in the rotation.
                    victim = n % 2 if policy == "pick_first" else 0
                    in_use = replicas[victim]
                    await until(functools.partial(serves_our_client, in_use), within=20, what="its use")
                    replicas[victim] = await asyncio.to_thread(drain_and_restart, in_use, workdir, store)
            assert outcome.failures == []
            assert len(outcome.acknowledged) > drains * WRITERS, "the writers hardly ran"
            stored = {profile.user_id async for profile in client.list_all("w")}
            assert stored.issuperset(outcome.acknowledged)
    finally:
        for replica in replicas:
            replica.stop()


@pytest.mark.parametrize("policy", POLICIES)
async def test_rolling_drains_under_load_fail_no_call(tmp_path: Path, policy: str) -> None:
    await rolling_drains(tmp_path, policy, drains=3)


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
async def test_many_rolling_drains_under_load_fail_no_call(tmp_path: Path, policy: str) -> None:
    await rolling_drains(tmp_path, policy, drains=20)
