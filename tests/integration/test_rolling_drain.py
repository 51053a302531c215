"""Rolling drains under load lose no call: two profile replicas on one SQLite file, one SDK client dialling
both replicas, readers and writers running while a replica the client uses is drained (SIGTERM) and restarted.

A call that races the listener closing reaches the draining server but no handler, and gRPC answers it
CANCELLED; the SDK retries it on the other replica (see microstate.server.runtime and
microstate.client._channel). Snapshots are off, so a read must be answered live to count as a success, and
every write is to a new key, so the writes acknowledged can all be looked up afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from pathlib import Path

import pytest

from microstate.client.profile.v1 import ProfileClient
from tests.support.processes import ServerProcess, until
from tests.support.replicas import WRITERS, balanced_options, load, port_of, serves_our_client, start_replica

pytestmark = pytest.mark.process

POLICIES = ["pick_first", "round_robin"]
CALL_TIMEOUT = 10.0
"""Longer than a drain and a restart take: a call fails by an error, not by waiting one out."""
FLAGS = ("--drain-seconds", "0.5", "--grace-seconds", "5")


def drain_and_restart(replica: ServerProcess, workdir: Path, store: str) -> ServerProcess:
    replica.send(signal.SIGTERM)
    assert replica.wait() == 0, replica.describe()
    return start_replica(workdir, store, *FLAGS, "--port", port_of(replica))


async def rolling_drains(workdir: Path, policy: str, drains: int) -> None:
    store = f"sqlite:///{workdir / 'profiles.db'}"
    replicas = [start_replica(workdir, store, *FLAGS), start_replica(workdir, store, *FLAGS)]
    options = balanced_options(replicas, policy, timeout=CALL_TIMEOUT)
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
