"""Replicas of the profile microstate behind one SDK client, and load to run through it while they are
drained, killed or restarted (tests/integration/test_rolling_drain.py, tests/chaos/).

The client dials every replica (`ipv4:A,B`) and balances with the policy given. The load's writers each
create new keys, so every acknowledged write can be looked up afterwards; its readers read one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from microstate.client import BreakerOptions, ClientOptions, SnapshotOptions
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.hooked_server import FIRST_CALL
from tests.support.processes import ServerProcess, start_server

WRITERS = READERS = 16
SEED = "seed"
"""The key the readers read; `load` creates it."""


@dataclass
class Load:
    acknowledged: list[str] = field(default_factory=list)
    """Keys whose create was acknowledged, in the order the acknowledgements came."""
    failed_writes: dict[str, Exception] = field(default_factory=dict)
    """Key -> why its create failed."""
    failed_reads: list[Exception] = field(default_factory=list)
    reads: int = 0
    """Reads answered."""

    @property
    def failures(self) -> list[str]:
        """Every failed call, readably."""
        writes = [
            f"create {key}: {type(error).__name__}: {error}" for key, error in self.failed_writes.items()
        ]
        return writes + [f"get: {type(error).__name__}: {error}" for error in self.failed_reads]


@contextlib.asynccontextmanager
async def load(
    client: ProfileClient, *, writers: int = WRITERS, readers: int = READERS
) -> AsyncIterator[Load]:
    """`readers` tasks reading SEED and `writers` tasks creating new profiles until the block ends."""
    outcome, stop = Load(), asyncio.Event()
    await client.create(Profile(user_id=SEED, display_name="Seed"))

    async def write(writer: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            user_id = f"w{writer}-{n}"
            try:
                await client.create(Profile(user_id=user_id, display_name="W"))
            except Exception as error:  # every failure counts, whatever its kind
                outcome.failed_writes[user_id] = error
            else:
                outcome.acknowledged.append(user_id)

    async def read() -> None:
        while not stop.is_set():
            try:
                await client.get(SEED)
            except Exception as error:
                outcome.failed_reads.append(error)
            else:
                outcome.reads += 1

    tasks = [asyncio.create_task(write(i)) for i in range(writers)]
    tasks += [asyncio.create_task(read()) for _ in range(readers)]
    try:
        yield outcome
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def start_replica(workdir: Path, store: str, *flags: str) -> ServerProcess:
    """A profile server on `store` that logs the first call it gets from a client (`serves_our_client`)."""
    return start_server("profile", workdir, "--store", store, *flags, hooks=("--log-first-call",))


def serves_our_client(replica: ServerProcess) -> bool:
    """The replica got a call from the client since it started (started with hooks=["--log-first-call"];
    only the client calls the profile service)."""
    return any(record["msg"] == FIRST_CALL for record in replica.log_records())


def every_replica(replicas: Sequence[ServerProcess]) -> str:
    """The target that dials every replica: `ipv4:127.0.0.1:A,127.0.0.1:B`."""
    return "ipv4:" + ",".join(replica.target for replica in replicas)


def balanced_options(
    replicas: Sequence[ServerProcess], policy: str = "round_robin", **timing: float
) -> ClientOptions:
    """Options that balance over every replica with `policy` and count only live answers: no snapshots
    (a read must be answered live to count) and no breaker. `timing`: timeout, max_reconnect_backoff."""
    return ClientOptions(
        target=every_replica(replicas),
        timeout=timing.get("timeout", 10.0),
        snapshot=SnapshotOptions(max_entries=0),
        breaker=BreakerOptions(failure_threshold=None),
        max_reconnect_backoff=timing.get("max_reconnect_backoff", 0.5),  # a restarted replica rejoins soon
        channel_options=(("grpc.lb_policy_name", policy),),
    )


def port_of(replica: ServerProcess) -> str:
    return replica.target.rpartition(":")[2]
