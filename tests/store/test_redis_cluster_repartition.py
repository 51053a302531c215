"""Changing a Redis Cluster namespace's partition count online (repartitioning.py): under concurrent
writers, readers, listers and a watch, there and back; a killed run resumed; watches across the switch."""

from __future__ import annotations

import asyncio
import io
import json
import math
import random
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from microstate.server import migrating, registry
from microstate.server.config import ConfigError, load
from microstate.server.repartitioning import repartition
from microstate.server.store import ABSENT, Change, CursorExpired, Record, StoreUnavailable, open_store
from microstate.server.store.redis_cluster import RedisClusterStore, _classify, _unexecuted
from microstate.server.store.redis_cluster_layout import Layout, Layouts
from microstate.server.store.redis_cluster_repartition import arm, begin, finish, layouts, move_batch
from tests.conformance.waiting import take, watching
from tests.support.processes import launch_python, until
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

PATIENT = "socket_timeout=15&failover_budget=30"
"""For a loaded test machine, where a node can take seconds to answer: a slow answer is not a loss."""
THROTTLE = 0.003
"""Seconds each writer rests between calls (the lister 10x): enough load to race every move, not so much
that the nodes of the shared test cluster starve and miss the cluster bus's 2 s node timeout."""
SETTLE = 1.2
"""Above the stores' LAYOUT_REFRESH (1 s): every store object has read the next layout before a key moves."""


@asynccontextmanager
async def server_and_runner(
    cluster: RedisCluster, partitions: int
) -> AsyncIterator[tuple[RedisClusterStore, RedisClusterStore]]:
    """Two stores of a new namespace of `partitions` partitions: one serves, one runs the repartition (as
    `microstate migrate` does, in a process of its own)."""
    namespace = f"repart{uuid.uuid4().hex[:12]}"
    server = await open_store(f"{cluster.url}?partitions={partitions}&{PATIENT}", namespace)
    runner = await open_store(f"{cluster.url}?{PATIENT}", namespace)
    assert isinstance(server, RedisClusterStore) and isinstance(runner, RedisClusterStore)
    try:
        yield server, runner
    finally:
        await server.close()
        await runner.close()


async def seed(store: RedisClusterStore, keys: list[str], ttl_every: int = 0) -> dict[str, Record]:
    """Write each key once (every `ttl_every`-th with a TTL): the records by key."""
    records = {}
    for i, key in enumerate(keys):
        ttl = 3600.0 if ttl_every and i % ttl_every == 0 else None
        records[key] = await store.put(key, f"seed {key}".encode(), ttl=ttl)
    return records


async def list_all(store: RedisClusterStore, limit: int) -> list[Record]:
    records: list[Record] = []
    after: str | None = None
    while True:
        page = await store.list("", after=after, limit=limit)
        records.extend(page.records)
        if page.next_after is None:
            return records
        after = page.next_after


@dataclass
class World:
    """What the writers had acknowledged, key by key, and every acknowledged change in order."""

    models: dict[str, Record | None] = field(default_factory=dict)
    history: dict[str, list[tuple[int, bytes | None]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    writes: int = 0
    listings: int = 0
    unavailable: int = 0
    """Writes that failed UNAVAILABLE, not acknowledged (the cluster stalled): their outcome is read back."""

    def acknowledge(self, key: str, record: Record | None, revision: int) -> None:
        self.models[key] = record
        self.history.setdefault(key, []).append((revision, None if record is None else record.value))
        self.writes += 1


async def write_own_keys(
    store: RedisClusterStore, world: World, keys: list[str], stop: asyncio.Event
) -> None:
    """Read each of this writer's keys, check it is exactly what was acknowledged last (value, etag,
    expiry), then update it with if_match, delete it or create it again. A write that fails UNAVAILABLE
    (the shared test cluster can stall on a loaded machine) is not acknowledged: the next read tells
    whether it committed, and it must show either the write or what was there before."""
    rng = random.Random(keys[0])
    n = 0
    while not stop.is_set():
        key = rng.choice(keys)
        n += 1
        try:
            current = await store.get(key)
            if current != world.models.get(key):
                world.failures.append(f"get {key}: {current} but acknowledged {world.models.get(key)}")
                return
            attempt: bytes | None = None  # a deletion
            if current is not None and rng.random() < 0.15:
                write = partial(store.delete, key, if_match=current.revision)
            else:
                attempt = f"{key}:{n}".encode()
                condition = ABSENT if current is None else current.revision
                ttl = 3600.0 if rng.random() < 0.3 else None
                write = partial(store.put, key, attempt, if_match=condition, ttl=ttl)
            try:
                outcome = await write()
            except StoreUnavailable:
                world.unavailable += 1
                outcome = await store.get(key)
                if outcome == current:
                    continue  # it did not commit
                if (None if outcome is None else outcome.value) != attempt:
                    world.failures.append(f"{key}: after a failed write, neither it nor the previous record")
                    return
            record = outcome if isinstance(outcome, Record) else None
            world.acknowledge(key, record, -1 if record is None else record.revision)
        except Exception as exc:  # every failed call is a finding
            world.failures.append(f"{key}: {type(exc).__name__}: {exc}")
            return
        await asyncio.sleep(THROTTLE)  # a throttle, not a synchronisation


async def list_static_keys(
    store: RedisClusterStore, world: World, static: dict[str, Record], stop: asyncio.Event
) -> None:
    """List everything in small pages, again and again: the keys no writer touches are each listed once,
    exactly as written, whatever moves under the pages."""
    while not stop.is_set():
        try:
            listed = await list_all(store, limit=37)
        except Exception as exc:
            world.failures.append(f"list: {type(exc).__name__}: {exc}")
            return
        keys = [record.key for record in listed]
        if keys != sorted(set(keys)):
            world.failures.append("list: keys out of order or repeated")
            return
        got = {record.key: record for record in listed if record.key in static}
        if got != static:
            missing = sorted(set(static) - set(got))[:5]
            world.failures.append(f"list: static keys missing or changed, e.g. {missing}")
            return
        world.listings += 1
        await asyncio.sleep(10 * THROTTLE)  # a throttle, not a synchronisation


async def follow(store: RedisClusterStore, after: str, into: list[Change]) -> None:
    async with watching(store, after=after) as changes:
        async for change in changes:
            into.append(change)


async def test_repartition_there_and_back_under_writers_loses_nothing_and_keeps_every_etag(
    redis_cluster: RedisCluster,
) -> None:
    await there_and_back(redis_cluster, [16, 64, 16], writers=4, untouched=150, batch=25)


@pytest.mark.slow
async def test_repartition_to_odd_counts_with_more_keys_and_writers(redis_cluster: RedisCluster) -> None:
    await there_and_back(redis_cluster, [32, 100, 7], writers=8, untouched=2000, batch=100)


async def there_and_back(
    redis_cluster: RedisCluster, counts: list[int], *, writers: int, untouched: int, batch: int
) -> None:
    """Repartition through `counts` under `writers` writers, a lister and a watch; then check every key,
    every page and every change watched."""
    async with server_and_runner(redis_cluster, counts[0]) as (server, runner):
        static = await seed(server, [f"s/{i:04d}" for i in range(untouched)], ttl_every=3)
        world = World()
        writer_keys = [[f"w{w}/{i:02d}" for i in range(60)] for w in range(writers)]
        for keys in writer_keys:
            for key in keys[:40]:
                record = await server.put(key, b"seed")
                world.acknowledge(key, record, record.revision)
        start = await server.head_cursor()
        world.history.clear()
        world.writes = 0
        watched: list[Change] = []
        watch = asyncio.create_task(follow(server, start, watched))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(write_own_keys(server, world, keys, stop)) for keys in writer_keys]
        tasks.append(asyncio.create_task(list_static_keys(server, world, static, stop)))

        for count in counts[1:]:
            progress = await repartition(runner, count, batch=batch, settle=SETTLE)
            assert (await layouts(server)).current.partitions == count
            assert progress.state.converted >= untouched
        writes_during = world.writes
        stop.set()
        await asyncio.gather(*tasks)

        assert world.failures == []
        assert writes_during > 200 and world.listings >= 2
        final = await layouts(server)
        assert final.current.partitions == counts[-1] and final.next is None and final.dropped is None
        assert final.current.generation == len(counts) - 1
        expected = {**static, **{k: r for k, r in world.models.items() if r is not None}}
        assert {r.key: r for r in await list_all(server, limit=50)} == expected
        live = {key: record for key, record in world.models.items() if record is not None}
        assert await server.batch_get(list(world.models)) == live
        for key, record in world.models.items():
            assert await server.get(key) == record
        # Every acknowledged change watched exactly once, in revision order, across both switches.
        total = sum(len(changes) for changes in world.history.values())
        await until(lambda: len(watched) >= total, within=30, what="the watch delivered every change")
        watch.cancel()
        assert len(watched) == total
        cursors = [int(change.cursor) for change in watched]
        assert cursors == sorted(set(cursors))
        for key, changes in world.history.items():
            seen = [
                (int(c.cursor), None if c.record is None else c.record.value) for c in watched if c.key == key
            ]
            assert [value for _, value in seen] == [value for _, value in changes], key
            puts = [revision for revision, value in changes if value is not None]
            assert [revision for revision, value in seen if value is not None] == puts, key


def converted(output: str) -> int:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return lines[-1]["converted"] if lines else 0


async def test_a_killed_run_leaves_the_namespace_serving_and_the_next_run_resumes_it(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    async with server_and_runner(redis_cluster, 16) as (server, runner):
        models = await seed(server, [f"k/{i:03d}" for i in range(400)], ttl_every=4)
        world, stop = World(), asyncio.Event()  # writers of keys of their own, throughout
        writers = [
            asyncio.create_task(write_own_keys(server, world, [f"w{w}/{i:02d}" for i in range(30)], stop))
            for w in range(3)
        ]
        run = launch_python(
            [
                "-m",
                "tests.support.repartition_run",
                f"{redis_cluster.url}?{PATIENT}",
                server.namespace,
                "48",
                "5",
                "0.02",
                str(SETTLE),
            ],
            tmp_path,
        )
        try:
            await until(lambda: converted(run.output()) >= 100, within=60, what="the run moved 100 keys")
        finally:
            run.send(signal.SIGKILL)
            run.wait()
        stuck = await layouts(server)
        assert stuck.next is not None and stuck.next.partitions == 48
        assert converted(run.output()) < 400

        # Killed half-way, the namespace keeps serving: every key exact, writes to moved and unmoved keys.
        assert await server.batch_get(list(models)) == models
        assert {r.key: r for r in await list_all(server, limit=64) if r.key.startswith("k/")} == models
        for i in range(0, 400, 7):
            key = f"k/{i:03d}"
            models[key] = await server.put(key, b"while stuck", if_match=models[key].revision)
        for i in range(3, 400, 41):
            key = f"k/{i:03d}"
            assert await server.delete(key, if_match=models[key].revision)
            del models[key]
        for i in range(400, 420):
            record = await server.put(f"k/{i:03d}", b"new while stuck", if_match=ABSENT)
            models[record.key] = record

        progress = await repartition(runner, 48, batch=50, settle=SETTLE)
        stop.set()
        await asyncio.gather(*writers)
        assert progress.resumed
        assert world.failures == [] and world.writes > 100
        done = await layouts(server)
        assert done.current.partitions == 48 and done.next is None and done.dropped is None
        written = {key: record for key, record in world.models.items() if record is not None}
        assert await server.batch_get([*models, "k/003", *world.models]) == models | written
        assert {r.key: r for r in await list_all(server, limit=64)} == models | written


async def test_watches_resume_exactly_across_the_switch_until_the_old_logs_are_deleted(
    redis_cluster: RedisCluster,
) -> None:
    async with server_and_runner(redis_cluster, 8) as (server, runner):
        records = await seed(server, [f"a/{i:03d}" for i in range(60)])
        before = await server.head_cursor()
        first = await server.put("a/000", b"before the move", audit=b"first")
        await begin(runner, 24)
        await asyncio.sleep(SETTLE)  # what the run does: every store reads the next layout first
        await arm(runner)
        _, moved, _ = await move_batch(runner, None, 30)
        assert moved == 30  # a/000 .. a/029 are in the new layout now
        moved_write = await server.put(
            "a/001", b"moved key", if_match=records["a/001"].revision, audit=b"moved"
        )
        unmoved = records["a/059"].revision
        unmoved_write = await server.put("a/059", b"unmoved key", if_match=unmoved, audit=b"unmoved")
        created = await server.put("b/new", b"created while moving", if_match=ABSENT, audit=b"created")

        # A watch from before the move delivers the changes of both layouts once each, in order.
        async with watching(server, after=before) as changes:
            seen = await take(changes, 4, within=10)
        assert [change.record for change in seen] == [first, moved_write, unmoved_write, created]
        mid = seen[-1].cursor
        async with watching(server, after=mid) as live:
            await repartition(
                runner, 24, batch=50, settle=SETTLE
            )  # resumes the begun run, switches, cleans up
            after_switch = await server.put(
                "a/059", b"after the switch", if_match=unmoved_write.revision, audit=b"after"
            )
            assert [change.record for change in await take(live, 1, within=10)] == [after_switch]
        # A cursor at or after the old layout's last change resumes exactly; one before it cannot any more
        # (the old logs are deleted): the watch ends with CursorExpired, and clients re-list.
        async with watching(server, after=mid) as resumed:
            assert [change.record for change in await take(resumed, 1, within=10)] == [after_switch]
        # The old layout's audit journal is kept: the sealer reads every audited write in order.
        audited = [first, moved_write, unmoved_write, created, after_switch]
        assert await server.audit_journal(int(before), 10) == [
            (record.revision, entry)
            for record, entry in zip(
                audited, [b"first", b"moved", b"unmoved", b"created", b"after"], strict=True
            )
        ]
        for old in (before, str(first.revision)):
            with pytest.raises(CursorExpired):
                async with watching(server, after=old) as expired:
                    await take(expired, 1, within=10)


async def test_the_command_refuses_partitions_where_there_are_none_and_reports_them_where_there_are(
    redis_cluster: RedisCluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """`microstate migrate NAME --partitions P`: a usage error (exit 2) on a store without partitions or
    with both --to and --partitions; a dry run on the cluster tells the layout and changes nothing."""
    profile = registry.get("profile")
    plain = load({"store": f"redis://127.0.0.1:{redis_server.port}/0", "data_dir": tmp_path})
    with pytest.raises(ConfigError, match="only a Redis Cluster store"):
        await migrating.run(
            profile, plain, migrating.Options(None, False, 10, 0, 0, partitions=8), io.StringIO()
        )
    with pytest.raises(ConfigError, match="settle must be more than 1s"):
        await migrating.run(
            profile,
            load({"store": redis_cluster.url, "data_dir": tmp_path}),
            migrating.Options(None, False, 10, 0, 0.5, partitions=8),
            io.StringIO(),
        )
    with pytest.raises(ConfigError, match="either --to"):
        await migrating.run(
            profile, plain, migrating.Options(2, False, 10, 0, 0, partitions=8), io.StringIO()
        )
    on_cluster = load({"store": redis_cluster.url, "data_dir": tmp_path})
    out = io.StringIO()
    dry = migrating.Options(None, True, 10, 0, 0, partitions=64)
    assert await migrating.run(profile, on_cluster, dry, out) == 0
    assert "profile: --partitions 64: dry run, nothing changed" in out.getvalue()
    assert "partitions" in out.getvalue().splitlines()[1]


def test_each_layout_takes_revision_suffixes_the_current_one_does_not_use() -> None:
    legacy = Layouts.decode(b"16")
    assert legacy == Layouts(Layout(16)) and legacy.encode() == "16"  # a namespace never repartitioned
    up = legacy.starting(64)
    assert up.next == Layout(64, generation=1, base=16)
    done = up.switched((5, 0) * 8).cleaned()
    assert done == Layouts(Layout(64, 1, 16), expired_below=5, retired=(Layout(16),))
    assert Layouts.decode(done.encode()) == done
    assert done.starting(16).next == Layout(16, generation=2, base=0)  # back: below the current range
    assert done.starting(900).next == Layout(900, generation=2, base=80)
    with pytest.raises(ValueError, match="distinct suffixes"):
        done.starting(930)  # neither below 16 nor above 80 leaves room for 930
    with pytest.raises(ValueError, match="already under way"):
        up.starting(32)


def test_a_script_refused_by_a_cluster_that_is_down_changed_nothing_and_may_be_retried() -> None:
    refused = ResponseError(
        "ERR Script attempted to execute a write command while the cluster is down and readonly script: 0f"
    )
    assert _unexecuted(refused)
    assert isinstance(_classify(refused), StoreUnavailable)
    assert not _unexecuted(ResponseError("ERR something else"))


async def test_a_server_that_has_not_read_the_switch_yet_sees_what_the_others_write(
    redis_cluster: RedisCluster,
) -> None:
    """Between the switch and the settle after it, servers that read the new layout write new keys straight
    into the new partitions; one still on both layouts must read them (they are marked owned) and write
    them (an old partition's "absent" must not make the new one drop them)."""
    async with server_and_runner(redis_cluster, 8) as (fresh, runner):
        stale = await open_store(f"{redis_cluster.url}?{PATIENT}", fresh.namespace)
        assert isinstance(stale, RedisClusterStore)
        try:
            await seed(fresh, [f"a/{i:02d}" for i in range(20)])
            await begin(runner, 12)
            await asyncio.sleep(SETTLE)  # what the run does: every store reads the next layout first
            await arm(runner)
            while (await move_batch(runner, None, 100))[0]:
                pass
            assert await stale.get("a/00") is not None and (await layouts(stale)).next is not None
            stale._layouts_read_at = math.inf  # as a server that has not re-read the layout since
            finishing = asyncio.create_task(finish(runner, settle=30))
            await until(lambda: runner._layouts.next is None, within=30, what="the switch")
            created = await fresh.put("b/new", b"by a server on the new layout", if_match=ABSENT)
            assert stale._arriving is not None  # still reading both layouts
            assert await stale.get("b/new") == created
            assert await stale.batch_get(["b/new"]) == {"b/new": created}
            assert [r.key for r in (await stale.list("b/", limit=10)).records] == ["b/new"]
            stale._layouts_read_at = -math.inf
            finishing.cancel()
        finally:
            await stale.close()


async def test_forget_while_a_repartition_runs_scrubs_the_old_and_the_new_layouts_logs(
    redis_cluster: RedisCluster,
) -> None:
    """A key written before its move and again after it has changes in its old partition's log and its new
    one's: forget removes both, so no log of either layout keeps the erased values."""
    async with server_and_runner(redis_cluster, 8) as (server, runner):
        await seed(server, [f"a/{i:03d}" for i in range(60)])
        written = await server.put("a/001", b"secret before the move")
        await begin(runner, 24)
        await asyncio.sleep(SETTLE)  # what the run does: every store reads the next layout first
        await arm(runner)
        _, moved, _ = await move_batch(runner, None, 30)
        assert moved == 30  # a/000 .. a/029, a/001 among them, are in the new layout now
        await server._refresh_layouts()
        assert server._arriving is not None
        written = await server.put("a/001", b"secret after the move", if_match=written.revision)
        await server.delete("a/001", if_match=written.revision)

        await server.forget(["a/001"], keep_deletions=False)
        logs = [partition.log for partition in [*server._partitions, *server._arriving]]
        dumps = [await server._client.execute_command("DUMP", log) or b"" for log in logs]
        assert not [log for log, dump in zip(logs, dumps, strict=True) if b"secret" in dump]
        assert await server.get("a/001") is None and await server.get("a/002") is not None
