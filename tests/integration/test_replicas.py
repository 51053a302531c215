"""Replicas behind the SDK: one client given two profile replicas (on one SQLite file) spreads its calls over
both, and stops sending to a replica as soon as its health turns NOT_SERVING (a drain), before it stops.
Calls are counted by each server process itself (`--metrics-port`)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from microstate.client import ClientOptions
from microstate.client.profile.v1 import Profile, SyncProfileClient
from tests.support.metrics import calls
from tests.support.processes import START_TIMEOUT, ServerProcess, health_status, start_server, wait_for

pytestmark = pytest.mark.process

SERVICE = "microstate.profile.v1.ProfileService"
CALLS = 200


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    store = f"sqlite:///{tmp_path / 'profiles.db'}"
    # A long drain: a replica told to stop reports NOT_SERVING but keeps answering for the whole test.
    flags = ("--store", store, "--metrics-port", "0", "--drain-seconds", "120", "--grace-seconds", "1")
    started = [start_server("profile", tmp_path, *flags) for _ in range(2)]
    try:
        yield started
    finally:
        for replica in started:
            replica.stop()


def gets(replicas: list[ServerProcess]) -> list[float]:
    return [calls(replica, SERVICE, "GetProfile") for replica in replicas]


def test_calls_spread_over_the_replicas(replicas: list[ServerProcess]) -> None:
    options = ClientOptions(replicas=tuple(replica.target for replica in replicas))
    with SyncProfileClient(options=options) as client:
        client.create(Profile(user_id="u1"))
        for _ in range(CALLS):
            client.get("u1")
    first, second = gets(replicas)
    assert first + second == CALLS
    assert min(first, second) >= CALLS / 4, f"round_robin spread {first}/{second}"


@pytest.mark.parametrize("health_checked", [True, False])
def test_a_draining_replica_gets_no_new_calls_when_health_is_checked(
    replicas: list[ServerProcess], health_checked: bool
) -> None:
    options = ClientOptions(
        replicas=tuple(replica.target for replica in replicas), health_checked=health_checked
    )
    draining = replicas[0]
    with SyncProfileClient(options=options) as client:
        client.create(Profile(user_id="u1"))

        def both_in_use() -> bool:
            client.get("u1")
            return min(gets(replicas)) > 0

        wait_for(both_in_use, within=START_TIMEOUT, what="both replicas in use")
        draining.send(signal.SIGTERM)
        wait_for(lambda: health_status(draining.target) == "NOT_SERVING", within=START_TIMEOUT, what="drain")
        if health_checked:
            # The client learns of the drain from the health stream it keeps open to each replica.
            def drained() -> bool:
                before = gets(replicas)
                for _ in range(20):
                    client.get("u1")
                return gets(replicas)[0] == before[0]

            wait_for(drained, within=START_TIMEOUT, what="calls to stop reaching the draining replica")
        before_draining, before_other = gets(replicas)
        for _ in range(CALLS):
            client.get("u1")
        after_draining, after_other = gets(replicas)
    if health_checked:
        assert after_draining == before_draining
        assert after_other - before_other == CALLS
    else:  # the control: without health checks round_robin keeps using a replica until it closes
        assert after_draining - before_draining >= CALLS / 4
