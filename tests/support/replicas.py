"""Replicas of a microstate behind one SDK client, and load to run through it while they are drained,
killed or restarted (tests/integration/test_rolling_drain.py, tests/chaos/).

The client dials every replica (`ipv4:A,B`) and balances with the policy given. The load's writers each
write a new key, so every acknowledged write can be looked up afterwards; its readers read one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from microstate.client import BreakerOptions, ClientOptions, SnapshotOptions
from microstate.client._options import replicas_target
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
            f"write {key}: {type(error).__name__}: {error}" for key, error in self.failed_writes.items()
        ]
        return writes + [f"read: {type(error).__name__}: {error}" for error in self.failed_reads]


def load(
    client: ProfileClient, *, writers: int = WRITERS, readers: int = READERS
) -> contextlib.AbstractAsyncContextManager[Load]:
    """`readers` tasks reading SEED (created first) and `writers` tasks creating new profiles until the
    block ends."""

    async def create(key: str) -> object:
        return await client.create(Profile(user_id=key, display_name="W"))

    async def read() -> object:
        return await client.get(SEED)

    return running_load(create, read, writers=writers, readers=readers, first=create(SEED))


@contextlib.asynccontextmanager
async def running_load(
    write: Callable[[str], Awaitable[object]],
    read: Callable[[], Awaitable[object]],
    *,
    writers: int = WRITERS,
    readers: int = READERS,
    first: Awaitable[object] | None = None,
) -> AsyncIterator[Load]:
    """`readers` tasks calling `read` and `writers` tasks calling `write` with new keys (`w<writer>-<n>`)
    until the block ends, each failure recorded; `first` is awaited before they start."""
    outcome, stop = Load(), asyncio.Event()
    if first is not None:
        await first

    async def write_on(writer: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            key = f"w{writer}-{n}"
            try:
                await write(key)
            except Exception as error:  # every failure counts, whatever its kind
                outcome.failed_writes[key] = error
            else:
                outcome.acknowledged.append(key)

    async def read_on() -> None:
        while not stop.is_set():
            try:
                await read()
            except Exception as error:
                outcome.failed_reads.append(error)
            else:
                outcome.reads += 1

    tasks = [asyncio.create_task(write_on(i)) for i in range(writers)]
    tasks += [asyncio.create_task(read_on()) for _ in range(readers)]
    try:
        yield outcome
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def start_replica(workdir: Path, store: str, *flags: str, name: str = "profile") -> ServerProcess:
    """A server of microstate `name` on `store` that logs the first call it gets from a client
    (`serves_our_client`). Replicas started in one `workdir` share what it prepares there (a session key)."""
    return start_server(name, workdir, "--store", store, *flags, hooks=("--log-first-call",))


def serves_our_client(replica: ServerProcess) -> bool:
    """The replica got a call from the client since it started (started with hooks=["--log-first-call"];
    only the client calls the profile service)."""
    return any(record["msg"] == FIRST_CALL for record in replica.log_records())


def every_replica(replicas: Sequence[ServerProcess]) -> str:
    """The target that dials every replica (`ipv4:127.0.0.1:A,127.0.0.1:B`), as ClientOptions.replicas does;
    the SDK balances such a target round_robin."""
    return replicas_target([replica.target for replica in replicas])


def balanced_options(
    replicas: Sequence[ServerProcess], policy: str = "round_robin", **timing: float
) -> ClientOptions:
    """Options that balance over every replica with `policy` and count only live answers: no snapshots
    (a read must be answered live to count) and no breaker. `timing`: timeout, max_reconnect_backoff."""
    return ClientOptions(
        replicas=tuple(replica.target for replica in replicas),
        timeout=timing.get("timeout", 10.0),
        snapshot=SnapshotOptions(max_entries=0),
        breaker=BreakerOptions(failure_threshold=None),
        max_reconnect_backoff=timing.get("max_reconnect_backoff", 0.5),  # a restarted replica rejoins soon
        load_balancing=policy,
    )


def port_of(replica: ServerProcess) -> str:
    return replica.target.rpartition(":")[2]
