"""An SDK watch across replica kills and restarts, and across a store kill: every change delivered, no gap,
no duplicate.

Two profile replicas on one redis; the watching client and the writing client each dial both
(`ipv4:A,B`, round_robin). One writer creates profiles one after the other while replica A is killed
(-9) and restarted, then replica B. The watch stream lives on one replica, and both are killed in turn,
so at least one kill breaks it; the SDK reopens it on a live replica from its last resume token (resume
tokens are positions in the store's change log, valid on every replica).

What the watch delivered is compared with what the writer was told and with what the store holds: each
acknowledged create is delivered once, with the etag the writer got back, in the order of the
acknowledgements; a create that failed UNAVAILABLE (its answer lost with a killed replica) is delivered
exactly when it was applied; nothing else is delivered.

The store kill: one replica on a redis that is killed (-9) mid-stream and restarted on its port with its
data. Writes fail UNAVAILABLE meanwhile; the open stream waits the outage out (the Redis store's watch
retries for up to `watch_outage_budget`, 30 s) or ends and is resumed by the SDK: either way, the same
checks hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from microstate.client import ClientOptions
from microstate.client.errors import Unavailable
from microstate.client.profile.v1 import Profile, ProfileChange, ProfileClient
from tests.chaos import recovery
from tests.support.processes import ServerProcess, until
from tests.support.redis_server import running_redis_server
from tests.support.replicas import every_replica, port_of, serves_our_client, start_replica
from tests.support.watches import first_token

pytestmark = [pytest.mark.process, pytest.mark.redis]

PREFIX = "w-"
END = f"{PREFIX}end"
"""Created last: once the watch delivers it, it has delivered everything before it."""
PROGRESS = 20
"""Acknowledged writes to wait for around each kill and restart, so each lands mid-stream."""


@dataclass
class Writes:
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    """(user_id, etag) of each acknowledged create, in order."""
    failed: dict[str, Exception] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def writing(client: ProfileClient) -> AsyncIterator[Writes]:
    """Creates PREFIX<n> one after the other until the block ends."""
    writes, stop = Writes(), asyncio.Event()

    async def write() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            user_id = f"{PREFIX}{n:06d}"
            try:
                created = await client.create(Profile(user_id=user_id))
            except Exception as error:  # every failure counts, whatever its kind
                writes.failed[user_id] = error
            else:
                writes.acknowledged.append((user_id, created.etag))

    task = asyncio.create_task(write())
    try:
        yield writes
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def watching(client: ProfileClient, resume_token: str) -> AsyncIterator[list[ProfileChange[Profile]]]:
    """Every change the SDK's watch of PREFIX delivers from `resume_token` on, appended as it comes."""
    delivered: list[ProfileChange[Profile]] = []
    events = client.watch(prefix=PREFIX, resume_token=resume_token)

    async def consume() -> None:
        async for change in events:
            delivered.append(change)

    task = asyncio.create_task(consume())
    try:
        yield delivered
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await events.aclose()


def options(replicas: list[ServerProcess]) -> ClientOptions:
    return ClientOptions(
        target=every_replica(replicas),
        timeout=10.0,
        max_reconnect_backoff=0.5,
    )


Changes = list[ProfileChange[Profile]]
Fault = Callable[[Writes, Changes], Awaitable[float]]
"""Breaks something while the watch runs and the writer writes; returns a time it measured."""


async def seconds_to_a_later_change(writes: Writes, delivered: Changes, since: float) -> float:
    """Seconds from `since` until the watch delivered a change acknowledged after now."""
    after = len(writes.acknowledged)

    def delivered_a_later_change() -> bool:
        later = writes.acknowledged[after : after + 1]
        return bool(later) and any(
            change.profile and change.profile.etag == later[0][1] for change in delivered
        )

    return await recovery.seconds_until(
        delivered_a_later_change, since=since, within=30, what="a change made after the fault delivered"
    )


async def more_writes(writes: Writes) -> None:
    """Wait until PROGRESS more writes were acknowledged."""
    count = len(writes.acknowledged) + PROGRESS
    await until(lambda: len(writes.acknowledged) >= count, within=20, what=f"{PROGRESS} more writes")


async def watched_through(replicas: list[ServerProcess], fault: Fault) -> tuple[float, Writes, list[str]]:
    """Watch and write through `replicas` while `fault` runs, then check that the watch delivered every
    change once (see the module docstring). What `fault` measured, the writes, and the failed writes that
    were applied anyway."""
    async with (
        ProfileClient(options=options(replicas)) as watcher,
        ProfileClient(options=options(replicas)) as writer,
    ):
        token = await first_token(watcher, writer)
        async with watching(watcher, token) as delivered:
            async with writing(writer) as writes:
                await until(lambda: len(delivered) >= PROGRESS, within=20, what="changes delivered")
                measured = await fault(writes, delivered)
            end = await writer.create(Profile(user_id=END))
            await until(lambda: any(c.user_id == END for c in delivered), within=30, what="the last change")
        stored = {profile.user_id: profile.etag async for profile in writer.list_all(PREFIX)}

    assert all(isinstance(error, Unavailable) for error in writes.failed.values()), writes.failed
    seen = [(change.user_id, change.profile.etag if change.profile else "") for change in delivered]
    assert len(set(seen)) == len(seen), "a change was delivered twice"
    assert len({change.resume_token for change in delivered}) == len(delivered), "a resume token repeated"
    assert seen[-1] == (END, end.etag)
    assert seen == sorted(stored.items()), "the watch delivered other changes than the store holds"
    acknowledged = [change for change in seen if change in set(writes.acknowledged)]
    assert acknowledged == writes.acknowledged, "an acknowledged change is missing or out of order"
    return measured, writes, [key for key, _ in seen if key in writes.failed]


async def watch_across_replica_kills(workdir: Path, store: str) -> None:
    replicas = [start_replica(workdir, store), start_replica(workdir, store)]

    async def kill_each_replica(writes: Writes, delivered: Changes) -> float:
        """kill -9 each replica in turn mid-stream and restart it once writes went on without it; the
        slower of the two times from a kill to the delivery of a change made after it."""
        resumed = []
        for index, victim in enumerate(list(replicas)):
            victim.send(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.to_thread(victim.wait)
            resumed.append(await seconds_to_a_later_change(writes, delivered, killed))
            await more_writes(writes)
            port = port_of(victim)
            replicas[index] = await asyncio.to_thread(start_replica, workdir, store, "--port", port)
            await until(
                functools.partial(serves_our_client, replicas[index]), within=30, what="the replica in use"
            )
        return max(resumed)

    try:
        resumed, writes, applied_anyway = await watched_through(replicas, kill_each_replica)
    finally:
        for replica in replicas:
            replica.stop()
    measure = "watch across replica kills"
    recovery.record(f"{measure}: first change after a kill delivered (the slower kill)", resumed)
    recovery.count(f"{measure}: creates failed UNAVAILABLE", len(writes.failed))
    recovery.count(f"{measure}: of those, applied anyway (and delivered)", len(applied_anyway))


async def watch_across_a_store_kill(workdir: Path) -> None:
    with running_redis_server() as redis:
        replicas = [start_replica(workdir, redis.url)]

        async def kill_the_store(writes: Writes, delivered: Changes) -> float:
            """kill -9 redis mid-stream, restart it on its port once writes fail; the seconds from redis
            answering again to the delivery of a change made after that."""
            await asyncio.to_thread(redis.kill)
            await until(lambda: writes.failed, within=10, what="a write refused while redis is down")
            await asyncio.to_thread(redis.start)
            return await seconds_to_a_later_change(writes, delivered, time.monotonic())

        try:
            back, writes, applied_anyway = await watched_through(replicas, kill_the_store)
        finally:
            replicas[0].stop()
    recovery.record("watch across a store kill: first change after redis is back delivered", back)
    recovery.count("watch across a store kill: creates refused while redis was down", len(writes.failed))
    recovery.count("watch across a store kill: of those, applied anyway (and delivered)", len(applied_anyway))


async def test_a_watch_across_replica_kills_delivers_every_change_once(tmp_path: Path) -> None:
    with running_redis_server() as redis:
        await watch_across_replica_kills(tmp_path, redis.url)


async def test_a_watch_across_a_store_kill_delivers_every_change_once(tmp_path: Path) -> None:
    await watch_across_a_store_kill(tmp_path)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_a_watch_across_replica_kills_repeatedly(tmp_path: Path, run: int) -> None:
    with running_redis_server() as redis:
        await watch_across_replica_kills(tmp_path, redis.url)


@pytest.mark.chaos
@pytest.mark.parametrize("run", range(5))
async def test_a_watch_across_a_store_kill_repeatedly(tmp_path: Path, run: int) -> None:
    await watch_across_a_store_kill(tmp_path)
