"""kill -9 one of two session replicas while an SDK client (`ipv4:A,B`, round_robin) validates and creates
sessions: no caller-visible error at all, writes included.

Unlike a profile create, a session create carries a request id (AIP-155; the SDK makes one per call), so
it applies once however often it is sent, and the SDK resends it on UNAVAILABLE like a read: a create whose
answer was lost with the killed replica is sent again to the other one, which answers with the session the
first attempt made. So: zero failures, and every acknowledged create is stored exactly once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from microstate.client.session.v1 import SessionClient
from tests.chaos import recovery
from tests.chaos.kills import kill_and_restart_mid_load
from tests.support.redis_server import running_redis_server
from tests.support.replicas import balanced_options, running_load, start_replica

pytestmark = [pytest.mark.process, pytest.mark.redis]

WRITERS = 8


def user_of(key: str) -> str:
    """Each writer creates its sessions for one user (`w3-17` -> `w3`)."""
    return key.partition("-")[0]


async def kill_one_session_replica_mid_load(workdir: Path, store: str) -> None:
    replicas = [start_replica(workdir, store, name="session") for _ in range(2)]
    try:
        async with SessionClient(options=balanced_options(replicas)) as sessions:
            seed = await sessions.create("seed", scopes=["infer"])

            async def create(key: str) -> object:
                return await sessions.create(user_of(key), attributes={"write": key})

            async def validate() -> object:
                return await sessions.validate(seed.token, ["infer"])

            async with running_load(create, validate, writers=WRITERS, readers=8) as outcome:
                back = await kill_and_restart_mid_load(replicas, outcome, workdir, store, name="session")

            assert outcome.failures == []
            stored: Counter[str] = Counter()
            for writer in range(WRITERS):
                async for session in sessions.list_user_all(f"w{writer}"):
                    stored[session.attributes["write"]] += 1
    finally:
        for replica in replicas:
            replica.stop()
    assert set(stored) == set(outcome.acknowledged), "a create was lost, or applied without an answer"
    assert set(stored.values()) == {1}, "a create was applied twice"
    recovery.record("session replica killed: restarted replica back in the client's rotation", back)


async def test_killing_one_session_replica_mid_load_fails_no_call(tmp_path: Path) -> None:
    with running_redis_server() as redis:
        await kill_one_session_replica_mid_load(tmp_path, redis.url)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_killing_one_session_replica_mid_load_repeatedly(tmp_path: Path, run: int) -> None:
    with running_redis_server() as redis:
        await kill_one_session_replica_mid_load(tmp_path, redis.url)
