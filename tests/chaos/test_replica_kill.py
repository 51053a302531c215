"""kill -9 one of two profile replicas while an SDK client (`ipv4:A,B`, round_robin) reads and writes.

Reads: no caller-visible error. gRPC retries a read that the dying replica dropped (UNAVAILABLE) on the
other replica, and round_robin stops picking the dead one once its connection is gone. Snapshots are off,
so every read counted is a live answer.

Writes: a write in flight on the killed replica fails UNAVAILABLE, typed (microstate.client.errors), and is
not retried: its answer was lost with the process, so it may or may not have been applied, and sending it
again could apply it twice (microstate.client._channel). We count those failures, check that every one is
UNAVAILABLE, that every acknowledged write is stored, and which of the failed ones were applied anyway.

Then the killed replica restarts on its port, and the client takes it back into its rotation by itself:
the time from its restart (SERVING) to the first call it gets is the recovery measured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from microstate.client.errors import Unavailable
from microstate.client.profile.v1 import ProfileClient
from tests.chaos import recovery
from tests.chaos.kills import kill_and_restart_mid_load
from tests.support.processes import until
from tests.support.redis_server import running_redis_server
from tests.support.replicas import balanced_options, load, start_replica

pytestmark = [pytest.mark.process, pytest.mark.redis]


async def kill_one_replica_mid_load(workdir: Path, store: str) -> None:
    replicas = [start_replica(workdir, store), start_replica(workdir, store)]
    try:
        async with ProfileClient(options=balanced_options(replicas)) as client:
            async with load(client, writers=8, readers=8) as outcome:
                back = await kill_and_restart_mid_load(replicas, outcome, workdir, store)
                reads_before_end = outcome.reads
                await until(
                    lambda: outcome.reads > reads_before_end, within=10, what="reads after the restart"
                )

            assert outcome.failed_reads == [], outcome.failures
            assert all(isinstance(error, Unavailable) for error in outcome.failed_writes.values()), (
                outcome.failures
            )
            stored = {profile.user_id async for profile in client.list_all("w")}
            assert stored.issuperset(outcome.acknowledged), "an acknowledged write was lost"
            applied_anyway = [key for key in outcome.failed_writes if key in stored]
    finally:
        for replica in replicas:
            replica.stop()
    recovery.record("replica killed: restarted replica back in the client's rotation", back)
    recovery.count("replica killed: writes failed UNAVAILABLE (answer lost)", len(outcome.failed_writes))
    recovery.count("replica killed: of those, applied anyway", len(applied_anyway))


async def test_killing_one_replica_mid_load_fails_no_read_and_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    with running_redis_server() as redis:
        await kill_one_replica_mid_load(tmp_path, redis.url)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_killing_one_replica_mid_load_repeatedly(tmp_path: Path, run: int) -> None:
    with running_redis_server() as redis:
        await kill_one_replica_mid_load(tmp_path, redis.url)
