"""What is specific to the Redis Cluster store: URLs, partitions spread over the masters, the merged watch,
WAIT, and the cluster changing under load (a slot migration; a master failover under `chaos`).

The behaviour every backend shares runs on the cluster in tests/conformance/ (backend `redis-cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.crc import key_slot

from microstate.server.store import Record, StoreMisconfigured, StoreUnavailable, open_store
from microstate.server.store.log import Appended, LogEntry, open_log
from microstate.server.store.redis_cluster import (
    WATCH_BATCH,
    RedisClusterStore,
    partition_of,
    partition_tags,
)
from microstate.server.store.roles import RECORDS, StoreKind, StoreRole, role_urls
from tests.conformance.waiting import take, watching
from tests.support.redis_cluster import RedisCluster, running_redis_cluster
from tests.support.redis_server import ClusterNodeRedisServer, RedisServer

pytestmark = pytest.mark.redis

SPREAD = 0.10
"""Each master's share of the keys (and of the writes) within ±10% of an even share."""


def namespace() -> str:
    return f"cluster{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(redis_cluster: RedisCluster) -> AsyncIterator[RedisClusterStore]:
    opened = await open_store(redis_cluster.url, namespace())
    assert isinstance(opened, RedisClusterStore)
    yield opened
    await opened.close()


def slot_owners(cluster: RedisCluster) -> dict[int, int]:
    """slot -> port of the master serving it, as the cluster says now."""
    client = cluster.client(cluster.nodes[0])
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    return {slot: int(master[1]) for low, high, master, *_ in ranges for slot in range(low, high + 1)}


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://127.0.0.1",
        "redis+cluster://127.0.0.1:7000,127.0.0.1",
        "redis+cluster://127.0.0.1:7000/3",
    ],
)
async def test_a_malformed_cluster_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="bad Redis Cluster store URL"):
        await open_store(url, "ns")


async def test_a_cluster_url_naming_a_plain_redis_is_misconfigured(redis_server: RedisServer) -> None:
    store = await open_store(f"redis+cluster://127.0.0.1:{redis_server.port}", namespace())
    try:
        with pytest.raises(StoreMisconfigured, match="outside any cluster"):
            await store.ping()
    finally:
        await store.close()


async def test_a_log_role_follows_a_cluster_url_and_keeps_each_log_in_one_slot(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    """redis+cluster:// serves the log role too (log/redis_cluster.py): one hash tag per log, so every key
    of a log is in one slot (its positions are one sequence), while two logs' tags spread."""
    events = StoreRole("events", StoreKind.LOG)
    urls = role_urls("telemetry", [RECORDS, events], redis_cluster.url, {}, tmp_path)
    assert urls["events"] == redis_cluster.url
    log = await open_log(urls["events"], namespace())
    try:
        await log.append([b"a", b"b"], dedupe_key="batch-1")
        await log.trim(0)
        keys = []
        for node in redis_cluster.masters():
            client = redis_cluster.client(node)
            keys += client.keys(f"msl:{{{log.namespace}}}:*")  # type: ignore[attr-defined]
            client.close()
    finally:
        await log.close()
    assert len(keys) == 3 and len({key_slot(key) for key in keys}) == 1  # entries, meta, the dedupe key


def test_partition_tags_spread_evenly_over_the_slots() -> None:
    tags = partition_tags("profile", 32)
    slots = [key_slot(tag.encode()) for tag in tags]
    assert [slot * 32 // 16384 for slot in slots] == list(range(32))


async def test_keys_and_writes_spread_across_the_masters_within_ten_percent(
    redis_cluster: RedisCluster, store: RedisClusterStore
) -> None:
    owners = slot_owners(redis_cluster)
    masters = sorted(set(owners.values()))
    before = {port: _script_calls(redis_cluster, port) for port in masters}
    keys = [f"user/{i}" for i in range(3000)]
    for chunk in range(0, len(keys), 100):
        await asyncio.gather(*(store.put(key, b"v") for key in keys[chunk : chunk + 100]))
    writes = {port: _script_calls(redis_cluster, port) - before[port] for port in masters}

    tags = partition_tags(store.namespace, 32)
    placed = Counter(owners[key_slot(tags[partition_of(key, 32)].encode())] for key in keys)
    even = len(keys) / len(masters)
    assert all(abs(placed[port] - even) <= SPREAD * even for port in masters), placed
    # Every write ran on its key's master: the writes spread exactly as the keys do (plus the few scripts
    # that loaded the namespace).
    assert all(abs(writes[port] - placed[port]) <= 5 for port in masters), (writes, placed)
    assert len(await store.batch_get(keys)) == len(keys)


def _script_calls(cluster: RedisCluster, port: int) -> int:
    node = next(node for node in cluster.nodes if node.port == port)
    client = cluster.client(node)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_the_partition_count_is_fixed_when_the_namespace_is_created(
    redis_cluster: RedisCluster,
) -> None:
    name = namespace()
    first = await open_store(redis_cluster.url, name, partitions=8)
    second = await open_store(f"{redis_cluster.url}?partitions=64", name)
    try:
        written = await first.put("k", b"v")
        assert await second.get("k") == written
        assert len(await second._ready()) == 8  # type: ignore[attr-defined]
    finally:
        await first.close()
        await second.close()


async def test_concurrent_writes_over_every_partition_are_watched_once_in_revision_order(
    store: RedisClusterStore,
) -> None:
    """The merged watch: writes racing on all partitions come out once each, revisions increasing, and a
    resume from any delivered cursor yields exactly the rest."""
    start = await store.head_cursor()
    written = await asyncio.gather(*(store.put(f"k{i}", str(i).encode()) for i in range(300)))

    async with watching(store, after=start) as changes:
        seen = await take(changes, 300)
    revisions = [change.record.revision for change in seen if change.record]
    assert revisions == sorted(set(revisions))
    assert sorted(revisions) == sorted(record.revision for record in written)

    async with watching(store, after=seen[149].cursor) as changes:
        rest = await take(changes, 150)
        sentinel = await store.put("sentinel", b"")
        (last,) = await take(changes, 1)
    assert [change.cursor for change in rest] == [change.cursor for change in seen[150:]]
    assert last.record == sentinel


async def test_a_catch_up_past_a_full_batch_of_one_partition_keeps_revision_order(
    store: RedisClusterStore,
) -> None:
    """One hot partition holds more changes than a watch reads from it at once (WATCH_BATCH): the changes of
    the other partitions must wait for the rest of it, not overtake it."""
    start = await store.head_cursor()
    written = []
    for i in range(WATCH_BATCH + 50):
        written += await asyncio.gather(store.put("hot", str(i).encode()), store.put(f"cold{i}", b"v"))

    async with watching(store, after=start) as changes:
        seen = await take(changes, len(written), within=30)
    assert [c.record for c in seen] == sorted(written, key=lambda record: record.revision)


async def test_forget_relinks_a_partitions_log_across_its_holes_and_leaves_no_plaintext(
    store: RedisClusterStore,
) -> None:
    """Within one partition: a run of forgotten changes in the middle of its log and one at its end (the next
    write then links past it). Watches, new and already reading, go across both without CursorExpired, and
    the rebuilt stream holds none of the forgotten values' bytes (XDEL alone would leave them in DUMP)."""
    partitions = await store._ready()
    number = partition_of("gone", len(partitions))
    before, middle, later = [
        key for key in (f"k{i}" for i in range(10_000)) if partition_of(key, len(partitions)) == number
    ][:3]
    start = await store.head_cursor()
    await store.put(before, b"kept")
    await store.put("gone", b"secret-one")
    await store.put("gone", b"secret-two")
    await store.put(middle, b"kept")
    await store.delete("gone")
    async with watching(store, after=start) as reading:
        (first,) = await take(reading, 1)
        await store.forget(["gone"], keep_deletions=False)
        dump = await store._client.execute_command("DUMP", partitions[number].log)
        assert b"secret" not in dump and b"gone" not in dump
        await store.put(later, b"x")
        keys = [first.key]
        while keys[-1] != later:  # what it had read before the forget may still come: then the rest
            keys += [change.key for change in await take(reading, 1)]
    assert keys[0] == before and middle in keys
    async with watching(store, after=start) as changes:
        assert [change.key for change in await take(changes, 3)] == [before, middle, later]


async def test_wait_for_a_replica_the_cluster_does_not_have_fails_the_write_as_unavailable(
    redis_cluster: RedisCluster,
) -> None:
    """WAIT runs on the connection that made the write (on another, it would return at once): with no
    replicas, `wait=1` times out and the write is reported unavailable; it did commit on the master."""
    store = await open_store(f"{redis_cluster.url}?wait=1&socket_timeout=0.3", namespace())
    try:
        with pytest.raises(StoreUnavailable, match="0 of the 1 replicas"):
            await store.put("k", b"v")
        assert (await store.get("k")) is not None
    finally:
        await store.close()


# --- the cluster changing under load ------------------------------------------------------------------


@dataclass
class Load:
    """What a load run saw: acknowledged writes, failed calls, reads answered."""

    acknowledged: list[Record] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reads: int = 0


async def run_load(store: RedisClusterStore, stop: asyncio.Event, load: Load, writer: int) -> None:
    """Update and read back a few keys of this writer's own until `stop`, counting what failed."""
    n = 0
    while not stop.is_set():
        key = f"w{writer}/{n % 40}"
        try:
            load.acknowledged.append(await store.put(key, f"{writer}:{n}".encode()))
        except StoreUnavailable as exc:
            load.failures.append(f"put {key}: {exc}")
        try:
            await store.batch_get([key, f"w{writer}/{(n + 7) % 40}"])
            load.reads += 1
        except StoreUnavailable as exc:
            load.failures.append(f"read {key}: {exc}")
        n += 1


async def test_a_slot_migration_under_load_fails_no_call_and_the_watch_misses_nothing() -> None:
    """`redis-cli --cluster reshard` moves a third of a master's slots (and the partitions on them) while
    writers and readers run and a watch follows: no call fails, every acknowledged write is watched once."""
    with running_redis_cluster() as cluster:
        store = await open_store(cluster.url, namespace())
        try:
            start = await store.head_cursor()
            load, stop = Load(), asyncio.Event()
            writers = [asyncio.create_task(run_load(store, stop, load, writer)) for writer in range(4)]
            await _until(lambda: len(load.acknowledged) >= 100)
            owned_before = Counter(slot_owners(cluster).values())[cluster.nodes[1].port]
            ids = _node_ids(cluster)
            source, target = ids[cluster.nodes[0].port], ids[cluster.nodes[1].port]
            await asyncio.to_thread(
                cluster.cli,
                "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}",
                "--cluster-from", source, "--cluster-to", target,
                "--cluster-slots", "1800", "--cluster-yes",
            )  # fmt: skip
            written_during = len(load.acknowledged)
            await _until(lambda: len(load.acknowledged) >= written_during + 100)
            stop.set()
            await asyncio.gather(*writers)

            assert Counter(slot_owners(cluster).values())[cluster.nodes[1].port] == owned_before + 1800
            assert load.failures == []
            assert load.reads > 200
            async with watching(store, after=start) as changes:
                seen = await take(changes, len(load.acknowledged), within=30)
            assert [c.record for c in seen] == sorted(load.acknowledged, key=lambda r: r.revision)
        finally:
            await store.close()


@dataclass
class LogLoad:
    """What an appender and a follower of one log did (see `log_under_load`)."""

    appended: list[Appended] = field(default_factory=list)
    followed: list[LogEntry] = field(default_factory=list)
    failed: int = 0
    """Appends that failed (StoreUnavailable) and were resent with the same dedupe key."""

    def in_order_once(self) -> bool:
        """Whether the follower got every appended entry once, in order, at consecutive positions."""
        expected = [(i + 1, str(i).encode()) for i in range(len(self.appended))]
        return [(entry.position, entry.data) for entry in self.followed] == expected


@contextlib.asynccontextmanager
async def log_under_load(cluster: RedisCluster, log_namespace: str) -> AsyncIterator[LogLoad]:
    """An appender appending one entry after another (resending a failed one with its dedupe key, as the
    log's contract says) and a follower following from the start, each on a log of its own, until the
    block ends; then appends stop and the block's exit waits until the follower has caught up."""
    appender = await open_log(cluster.url, log_namespace)
    follower = await open_log(cluster.url, log_namespace)
    load, stop = LogLoad(), asyncio.Event()

    async def append() -> None:
        while not stop.is_set():
            n = len(load.appended)
            try:
                load.appended.append(await appender.append([str(n).encode()], dedupe_key=f"b{n}"))
            except StoreUnavailable:
                load.failed += 1
                await asyncio.sleep(0.05)  # a resend's backoff while the cluster recovers

    async def follow() -> None:
        async with aclosing(follower.follow("0")) as entries:
            async for entry in entries:
                load.followed.append(entry)

    following, appending = asyncio.create_task(follow()), asyncio.create_task(append())
    try:
        yield load
        stop.set()
        await appending
        await _until(lambda: len(load.followed) >= len(load.appended), within=60)
    finally:
        stop.set()
        for task in (following, appending):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await appender.close()
        await follower.close()


async def test_a_log_follower_and_its_appender_go_on_through_a_migration_of_the_logs_slot() -> None:
    """The log's slot moves to another master while an appender appends and a follower follows: the
    follower gets every position once, in order, and then waits on the new master; an append the move
    refused is resent with its dedupe key and lands once."""
    with running_redis_cluster() as cluster:
        log_namespace = next(f"log{i}" for i in itertools.count() if key_slot(f"log{i}".encode()) < 100)
        slot = key_slot(log_namespace.encode())  # reshard moves the source's lowest slots first
        async with log_under_load(cluster, log_namespace) as load:
            await _until(lambda: len(load.appended) >= 50 and len(load.followed) >= 10)
            assert slot_owners(cluster)[slot] == cluster.nodes[0].port
            assert followers_on(cluster, cluster.nodes[0], log_namespace) == 1
            ids = _node_ids(cluster)
            await asyncio.to_thread(
                cluster.cli,
                "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}",
                "--cluster-from", ids[cluster.nodes[0].port], "--cluster-to", ids[cluster.nodes[1].port],
                "--cluster-slots", "100", "--cluster-yes",
            )  # fmt: skip
            assert slot_owners(cluster)[slot] == cluster.nodes[1].port
            moved = len(load.appended)
            await _until(lambda: len(load.appended) >= moved + 50)
            # the follower waits for more on the slot's new master
            await _until(lambda: followers_on(cluster, cluster.nodes[1], log_namespace) == 1)
        assert load.in_order_once()


def followers_on(cluster: RedisCluster, node: ClusterNodeRedisServer, log_namespace: str) -> int:
    """The connections the followers of a log hold on `node`."""
    client = cluster.client(node)
    try:
        return sum(c["name"] == f"microstate-log-{log_namespace}-follow" for c in client.client_list())
    finally:
        client.close()


def _node_ids(cluster: RedisCluster) -> dict[int, str]:
    client = cluster.client(cluster.nodes[0])
    try:
        lines = client.execute_command("CLUSTER", "NODES").decode().splitlines()
    finally:
        client.close()
    return {int(line.split()[1].split(":")[1].split("@")[0]): line.split()[0] for line in lines}


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "the load made no progress"
        await asyncio.sleep(0.02)  # the poll interval of this wait, not a synchronisation


@dataclass
class FailoverOutcome:
    acknowledged: int
    lost: int
    """Acknowledged writes the watch never delivered after the failover: gone with the old master."""
    failed_writes: int
    failed_reads: int


async def fail_over_under_load(wait: int) -> FailoverOutcome:
    """Kill a master of a 3+3 cluster while 4 writers write and read; wait for its replica to take over
    and the writes to resume; then check the watch delivered every surviving write once."""
    with running_redis_cluster(replicas_per_master=1) as cluster:
        store = await open_store(f"{cluster.url}?wait={wait}", namespace())
        try:
            start = await store.head_cursor()
            load, stop = Load(), asyncio.Event()
            writers = [asyncio.create_task(run_load(store, stop, load, writer)) for writer in range(4)]
            await _until(lambda: len(load.acknowledged) >= 200)
            victim = cluster.masters()[0]
            await asyncio.to_thread(victim.kill)
            await asyncio.to_thread(cluster.wait_until_ok, 60)
            resumed_from = len(load.acknowledged)
            await _until(lambda: len(load.acknowledged) >= resumed_from + 200, within=60)
            stop.set()
            await asyncio.gather(*writers)

            head = int(await store.head_cursor())
            seen: list[Record] = []
            async with watching(store, after=start) as changes:
                while not seen or seen[-1].revision < head:
                    (change,) = await take(changes, 1, within=30)
                    assert change.record is not None
                    seen.append(change.record)
            revisions = [record.revision for record in seen]
            assert revisions == sorted(set(revisions)), "a change was delivered twice or out of order"
            delivered = set(seen)
            return FailoverOutcome(
                acknowledged=len(load.acknowledged),
                lost=sum(record not in delivered for record in load.acknowledged),
                failed_writes=sum(failure.startswith("put") for failure in load.failures),
                failed_reads=sum(failure.startswith("read") for failure in load.failures),
            )
        finally:
            await store.close()


@pytest.mark.chaos
@pytest.mark.parametrize("wait", [0, 1])
async def test_a_master_failover_under_load_keeps_reads_answering_and_resumes_writes(wait: int) -> None:
    """Reads never fail (retried, then answered by the replica), writes resume, the watch resumes exactly;
    with wait=1 no acknowledged write is lost. (Writes in flight at the kill fail; with wait=1 so do the
    writes to the promoted master, which has no replica left to acknowledge them.)"""
    outcome = await fail_over_under_load(wait)
    print(f"failover with wait={wait}: {outcome}")  # the figures docs/scaling.md quotes
    assert outcome.failed_reads == 0
    if wait:
        assert outcome.lost == 0


@pytest.mark.chaos
async def test_a_log_follower_and_its_appender_go_on_through_a_failover_of_the_logs_master() -> None:
    """The master holding a log's slot dies under an appender and a follower: appends resume once its
    replica took over (an append that failed at the kill is resent with its dedupe key), and the follower,
    reconnected to the new master, gets every position once, in order."""
    with running_redis_cluster(replicas_per_master=1) as cluster:
        victim = cluster.masters()[0]
        owned = {slot for slot, port in slot_owners(cluster).items() if port == victim.port}
        log_namespace = next(f"log{i}" for i in itertools.count() if key_slot(f"log{i}".encode()) in owned)
        async with log_under_load(cluster, log_namespace) as load:
            await _until(lambda: len(load.appended) >= 100 and len(load.followed) >= 50)
            await asyncio.to_thread(victim.kill)
            await asyncio.to_thread(cluster.wait_until_ok, 60)
            resumed_from = len(load.appended)
            await _until(lambda: len(load.appended) >= resumed_from + 100, within=60)
        print(f"log failover: {len(load.appended)} appends, {load.failed} failed and resent")
        assert load.in_order_once()
