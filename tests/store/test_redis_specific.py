"""What is specific to the Redis store: key layout, the Lua CAS, the stream change log, outages and restarts.

The behaviour every backend shares is in tests/conformance/; these tests look inside Redis or break it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from microstate.server.store.base import (
    ABSENT,
    Change,
    ChangeKind,
    CursorExpired,
    InvalidCursor,
    PreconditionFailed,
    Record,
    StoreMisconfigured,
    StoreUnavailable,
)
from microstate.server.store.redis import MIGRATION_BATCH, RedisStore
from tests.conformance.waiting import watching
from tests.support.redis_server import RedisServer, running_redis_server
from tests.support.server_process import free_port

pytestmark = pytest.mark.redis

FAST = 3.0
"""An unreachable or hung server must be reported within this many seconds."""


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)  # poll interval


async def next_change(changes: AsyncIterator[Change], within: float = 10.0) -> Change:
    return await asyncio.wait_for(anext(changes), within)


def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A server of this test's own, for tests that stop, kill or freeze it."""
    with running_redis_server() as server:
        yield server


async def open_store(server: RedisServer, ns: str | None = None, **options: Any) -> RedisStore:
    return await RedisStore.open(server.url, ns or namespace(), **options)


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = await open_store(redis_server)
    yield store
    await store.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_every_key_carries_the_namespace_hash_tag(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.put("alpha", b"1", ttl=60)
    await store.put("beta/gamma", b"2")
    await store.delete("alpha")

    keys = [key async for key in raw.scan_iter(match=f"*{store.namespace}*")]

    assert {key.decode() for key in keys} == {
        f"ms:{{{store.namespace}}}:r:beta/gamma",
        f"ms:{{{store.namespace}}}:rev",
        f"ms:{{{store.namespace}}}:idx",
        f"ms:{{{store.namespace}}}:log",
    }
    assert len({key_slot(key) for key in keys}) == 1


async def test_the_change_log_is_trimmed_and_old_cursors_expire(redis_server: RedisServer) -> None:
    store = await open_store(redis_server, retention=10)
    try:
        for index in range(600):
            await store.put(f"k{index}", b"v")
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            length = await raw.xlen(f"ms:{{{store.namespace}}}:log")
        finally:
            await raw.aclose()
        # MAXLEN ~ trims whole stream nodes (100 entries by default), so the log keeps at least 10, roughly.
        assert 10 <= length < 300

        with pytest.raises(CursorExpired):
            await next_change(store.watch(after="1"))
        recent = await next_change(store.watch(after="599"))
        assert (recent.key, recent.cursor) == ("k599", "600")
    finally:
        await store.close()


async def test_compare_and_set_holds_under_concurrent_writers_on_two_connection_pools(
    redis_server: RedisServer,
) -> None:
    ns = namespace()
    stores = [await open_store(redis_server, ns), await open_store(redis_server, ns)]
    writers, increments = 16, 10
    await stores[0].put("counter", b"0", if_match=ABSENT)

    async def increment(store: RedisStore) -> list[int]:
        revisions = []
        for _ in range(increments):
            while True:
                current = await store.get("counter")
                assert current is not None
                try:
                    written = await store.put(
                        "counter", str(int(current.value) + 1).encode(), if_match=current.revision
                    )
                except PreconditionFailed as failed:
                    assert failed.current is not None and failed.current.revision > current.revision
                    continue
                revisions.append(written.revision)
                break
        return revisions

    try:
        results = await asyncio.gather(*(increment(stores[i % 2]) for i in range(writers)))
        final = await stores[1].get("counter")
        assert final is not None and int(final.value) == writers * increments
        revisions = [revision for result in results for revision in result]
        assert len(set(revisions)) == writers * increments  # no two writers won the same revision

        # The log holds exactly the successful writes, in revision order.
        changes = stores[0].watch(after="0")
        logged = [(await next_change(changes)).cursor for _ in range(writers * increments + 1)]
        assert logged == [str(revision) for revision in range(1, writers * increments + 2)]
    finally:
        for store in stores:
            await store.close()


async def test_batch_get_is_one_transaction(store: RedisStore, raw: aioredis.Redis) -> None:
    keys = [f"user{index}" for index in range(200)]
    for key in keys[::2]:
        await store.put(key, key.encode())

    async def calls() -> tuple[int, int]:
        stats = await raw.info("commandstats")
        exec_calls, mget_calls = (
            int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in ("exec", "mget")
        )
        return exec_calls, mget_calls

    (exec_before, mget_before) = await calls()
    found = await store.batch_get(keys)
    (exec_after, mget_after) = await calls()
    assert (exec_after - exec_before, mget_after - mget_before) == (1, 1)
    assert sorted(found) == sorted(keys[::2])


async def test_get_is_one_command_unless_the_record_has_a_ttl(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.put("plain", b"1")
    await store.put("session", b"2", ttl=60)

    async def calls() -> tuple[int, ...]:
        stats = await raw.info("commandstats")
        return tuple(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in ("get", "exec"))

    async def commands_of(read: Awaitable[object]) -> tuple[int, ...]:
        before = await calls()
        await read
        return tuple(after - was for after, was in zip(await calls(), before, strict=True))

    assert await commands_of(store.get("plain")) == (1, 0)
    assert await commands_of(store.get("absent")) == (1, 0)
    assert await commands_of(store.get("session")) == (1, 1), "a TTL is judged by Redis's clock, atomically"


async def test_without_the_pipeline_reads_and_writes_mean_the_same(redis_server: RedisServer) -> None:
    """A RedisStore built without a pipeline runs every command on redis-py, with the same meaning."""
    client, blocking = aioredis.Redis.from_url(redis_server.url), aioredis.Redis.from_url(redis_server.url)
    store = RedisStore(
        client, blocking, namespace(), retention=100, durable=False, watch_block=0.2, watch_outage_budget=1.0
    )
    try:
        written = await store.put("a", b"1", ttl=60)
        assert await store.batch_get(["a", "missing", "a"]) == {"a": written}
        assert (await store.list("")).records == [written]
        assert int(await store.head_cursor()) == written.revision
        await store.ping()
    finally:
        await store.close()


async def test_ttl_is_enforced_on_read_even_when_redis_has_not_evicted(
    store: RedisStore, raw: aioredis.Redis
) -> None:
    written = await store.put("session", b"s", ttl=0.05)
    assert written.expires_at is not None
    record_key = f"ms:{{{store.namespace}}}:r:session"
    await raw.persist(record_key)  # as if Redis's lazy/approximate expiry had not removed it yet

    async def server_time_passed_expiry() -> bool:
        seconds, micros = await raw.time()
        return seconds + micros / 1e6 > written.expires_at  # type: ignore[operator]

    await wait_for(server_time_passed_expiry)
    assert await raw.exists(record_key)
    assert await store.get("session") is None
    assert await store.batch_get(["session"]) == {}
    assert (await store.list()).records == []
    assert not await raw.exists(record_key), "list cleans up what it skips"
    recreated = await store.put("session", b"new", if_match=ABSENT)  # expired counts as absent
    changes = store.watch(after=str(written.revision))
    assert (await next_change(changes)).kind is ChangeKind.CREATED
    assert recreated.revision > written.revision


async def test_list_skips_and_removes_vanished_index_members_yet_fills_the_page(
    store: RedisStore, raw: aioredis.Redis
) -> None:
    for index in range(30):
        await store.put(f"item/{index:02}", b"v")
    # Records evicted behind the store's back leave stale index members.
    await raw.delete(*(f"ms:{{{store.namespace}}}:r:item/{index:02}" for index in range(0, 25)))

    page = await store.list("item/", limit=3)

    assert [record.key for record in page.records] == ["item/25", "item/26", "item/27"]
    assert page.next_after == "item/27"
    assert await raw.zcard(f"ms:{{{store.namespace}}}:idx") < 30
    last = await store.list("item/", after=page.next_after, limit=3)
    assert ([record.key for record in last.records], last.next_after) == (["item/28", "item/29"], None)


async def test_writes_purge_expired_records_that_nobody_lists(store: RedisStore, raw: aioredis.Redis) -> None:
    written = [await store.put(f"session/{index}", b"s", ttl=0.05) for index in range(20)]
    last_expiry = max(record.expires_at or 0 for record in written)

    async def server_time_passed_expiry() -> bool:
        seconds, micros = await raw.time()
        return seconds + micros / 1e6 > last_expiry

    await wait_for(server_time_passed_expiry)
    for index in range(3):  # each write forgets up to 8 expired records
        await store.put(f"other/{index}", b"v")

    assert await raw.zrange(f"ms:{{{store.namespace}}}:idx", 0, -1) == [b"other/0", b"other/1", b"other/2"]
    assert await raw.zcard(f"ms:{{{store.namespace}}}:exp") == 0
    assert not [key async for key in raw.scan_iter(match=f"ms:{{{store.namespace}}}:r:session/*")]


async def test_a_cancelled_watch_leaves_no_stale_reply_behind(store: RedisStore, raw: aioredis.Redis) -> None:
    blocked = asyncio.ensure_future(next_change(store.watch(after=await store.head_cursor())))
    await wait_for(blocked_reads(raw, store, 1))
    blocked.cancel()
    await wait_for(blocked_reads(raw, store, 0))

    changes = store.watch(after=await store.head_cursor())
    pending = asyncio.ensure_future(next_change(changes))
    written = await store.put("k", b"v")
    assert (await pending).record == written


async def test_a_watch_that_ended_leaves_no_connection_open(store: RedisStore, raw: aioredis.Redis) -> None:
    """However a watch ends (closed between changes, or cancelled while blocked), the connection of its
    blocking reads is closed with it; left idle in the pool, one per ended stream would stay open."""
    blocked = asyncio.ensure_future(next_change(store.watch(after=await store.head_cursor())))
    await wait_for(blocked_reads(raw, store, 1))
    blocked.cancel()
    closed = store.watch(after=await store.head_cursor())
    pending = asyncio.ensure_future(next_change(closed))
    await store.put("k", b"v")
    await pending
    await closed.aclose()

    async def no_watch_connections() -> bool:
        name = f"microstate-{store.namespace}"  # the client name RedisStore gives its connections
        return not [c for c in await raw.client_list() if c["name"] == name and c["cmd"] == "xread"]

    await wait_for(no_watch_connections)


async def test_a_lost_revision_counter_continues_after_the_log(
    store: RedisStore, raw: aioredis.Redis
) -> None:
    for index in range(3):
        await store.put(f"k{index}", b"v")
    await raw.delete(f"ms:{{{store.namespace}}}:rev")

    assert (await store.put("k3", b"v")).revision == 4
    assert await store.head_cursor() == "4"


async def test_a_flushed_script_cache_is_reloaded(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.put("a", b"1")
    await raw.script_flush()
    assert (await store.put("a", b"2")).revision == 2
    assert await store.get("a") is not None


@pytest.mark.parametrize("cursor", ["", "abc", "-1", "1-0", "01", " 1", "99999999999999999999"])
async def test_malformed_cursors_are_invalid(store: RedisStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await next_change(store.watch(after=cursor))


async def test_a_cursor_ahead_of_the_log_has_expired(store: RedisStore) -> None:
    await store.put("a", b"1")
    with pytest.raises(CursorExpired):
        await next_change(store.watch(after="5"))


async def test_an_unreachable_server_fails_fast() -> None:
    store = await RedisStore.open(f"redis://127.0.0.1:{free_port()}/0", namespace())
    try:
        for call in (store.ping(), store.get("a"), store.put("a", b"1"), store.list(), store.head_cursor()):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as raised:
                await call
            assert time.monotonic() - started < FAST
            assert not isinstance(raised.value, StoreMisconfigured)  # it may come up: not the URL's fault
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("credentials", "database", "refusal"),
    [
        ("", "999", "DB index is out of range"),
        (":wrong@", "0", "called without any password configured"),
        ("nobody:wrong@", "0", "WRONGPASS"),
    ],
)
async def test_a_url_the_server_refuses_is_misconfigured_not_an_outage(
    redis_server: RedisServer, credentials: str, database: str, refusal: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{redis_server.port}/{database}"
    store = await RedisStore.open(url, namespace())
    try:
        for call in (store.ping(), store.get("a"), store.put("a", b"1")):
            with pytest.raises(StoreMisconfigured, match=refusal):
                await call
    finally:
        await store.close()


async def test_a_server_that_wants_a_password_the_url_lacks_is_misconfigured(
    private_redis: RedisServer,
) -> None:
    admin = redis.Redis(port=private_redis.port)
    admin.config_set("requirepass", "secret")
    admin.close()
    store = await open_store(private_redis)
    try:
        with pytest.raises(StoreMisconfigured, match="NOAUTH"):
            await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("path", ["/abc", "/0x1"])
async def test_a_url_path_that_is_not_a_database_number_is_refused(path: str) -> None:
    """redis-py would silently use database 0 for it."""
    with pytest.raises(ValueError, match="database number"):
        await RedisStore.open(f"redis://127.0.0.1:6379{path}", namespace())


async def test_a_frozen_server_times_out_fast(private_redis: RedisServer) -> None:
    store = await open_store(private_redis)
    await store.put("a", b"1")
    pid = private_redis.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get("a")
        assert time.monotonic() - started < FAST
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await store.get("a") is not None
    await store.close()


async def test_socket_timeout_from_the_url_reaches_the_pipelined_connection(
    private_redis: RedisServer,
) -> None:
    """With 3 s from the URL, a read waits out a server frozen for longer than the 1 s default."""
    store = await RedisStore.open(f"{private_redis.url}?socket_timeout=3", namespace())
    written = await store.put("a", b"1")
    pid = private_redis.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        read = asyncio.ensure_future(store.get("a"))
        done, _ = await asyncio.wait({read}, timeout=1.8)
        assert not done, "the read gave up as soon as it does without the setting"
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert await read == written
    finally:
        await store.close()


async def test_store_settings_and_redis_py_options_share_the_url(redis_server: RedisServer) -> None:
    ns = namespace()
    url = f"redis://127.0.0.1:{redis_server.port}?db=5&durable=true&watch_block=0.2"
    store = await RedisStore.open(url, ns)
    raw_db5 = aioredis.Redis(port=redis_server.port, db=5)
    try:
        async with watching(store, after=await store.head_cursor()) as changes:
            written = await store.put("a", b"1")
            assert store.capabilities.durable
            assert await raw_db5.exists(f"ms:{{{ns}}}:rev")  # `db` reached the pipelined connection
            assert (await next_change(changes)).record == written  # ... and redis-py's own (the watch)
    finally:
        await raw_db5.aclose()
        await store.close()


@pytest.mark.parametrize(
    "query",
    [
        "protocol=3",  # RESP3 replies have other shapes than the store reads
        "legacy_responses=false",
        "socket_connect_timeout=1",  # the store's own is connect_timeout, which its connections all follow
        "ssl_ca_certs=/etc/ca.pem",  # TLS options need rediss://
        "client_name=mine",
        "durable=maybe",
        "retension=10",
    ],
)
async def test_what_the_store_would_not_follow_is_refused_naming_it(query: str) -> None:
    key = query.partition("=")[0]
    with pytest.raises(ValueError, match=rf"'?{key}'?[ =]"):
        await RedisStore.open(f"redis://127.0.0.1:{free_port()}/0?{query}", namespace())


@pytest.mark.parametrize("outage", ["restart", "kill"])
async def test_the_same_store_works_again_after_the_server_returns(
    private_redis: RedisServer, outage: str
) -> None:
    store = await open_store(private_redis)
    try:
        written = await store.put("a", b"1")
        if outage == "restart":
            private_redis.restart()
        else:
            private_redis.kill()
            with pytest.raises(StoreUnavailable):
                await store.get("a")
            private_redis.start()
        assert await store.get("a") == written  # appendfsync always: acknowledged writes survived
        assert (await store.put("a", b"2", if_match=written.revision)).revision == written.revision + 1
    finally:
        await store.close()


async def test_a_watch_resumes_across_a_server_crash_without_gaps_or_duplicates(
    private_redis: RedisServer,
) -> None:
    store = await open_store(private_redis, watch_block=0.2)
    try:
        changes = store.watch("user/")
        first = asyncio.ensure_future(next_change(changes))
        await store.put("other", b"-")  # filtered out
        await store.put("user/1", b"1")
        assert (await first).key == "user/1"

        private_redis.kill()
        pending = asyncio.ensure_future(next_change(changes, within=20))
        await wait_for(lambda: _unreachable(store))
        private_redis.start()
        await store.put("user/2", b"2")
        await store.put("user/3", b"3")

        resumed = [await pending, await next_change(changes)]
        assert [(change.key, change.cursor) for change in resumed] == [("user/2", "3"), ("user/3", "4")]
    finally:
        await store.close()


async def test_a_watch_gives_up_after_its_outage_budget(private_redis: RedisServer) -> None:
    store = await open_store(private_redis, watch_block=0.2, watch_outage_budget=0.5)
    try:
        changes = store.watch()
        await store.put("a", b"1")
        private_redis.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await next_change(changes)
        assert time.monotonic() - started < FAST
    finally:
        await store.close()


async def test_blocking_watch_reads_do_not_hold_up_other_calls(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    slow = await open_store(redis_server, watch_block=5.0)
    try:
        watching = asyncio.ensure_future(next_change(slow.watch(after=await slow.head_cursor())))
        await wait_for(blocked_reads(raw, slow, 1))
        started = time.monotonic()
        for index in range(20):
            await slow.put(f"k{index}", b"v")
        assert time.monotonic() - started < 2.5, "writes waited for the 5 s blocking read"
        assert (await watching).key == "k0"
    finally:
        await slow.close()


def blocked_reads(raw: aioredis.Redis, store: RedisStore, count: int) -> Callable[[], Awaitable[bool]]:
    """A condition: exactly `count` of this store's watches are blocked in XREAD on the server."""

    async def condition() -> bool:
        name = f"microstate-{store.namespace}"  # the client name RedisStore gives its connections
        clients = await raw.client_list()
        return sum(c["name"] == name and c["cmd"] == "xread" and "b" in c["flags"] for c in clients) == count

    return condition


async def _unreachable(store: RedisStore) -> bool:
    try:
        await store.ping()
    except StoreUnavailable:
        return True
    return False


# --- layout 1 → 2 ------------------------------------------------------------------------------------


async def write_layout_1(
    raw: aioredis.Redis, ns: str, records: list[tuple[str, int, bytes, int | None]]
) -> None:
    """A namespace as layout-1 code left it: a hash per record, an integer counter, the index, the
    expiries and the change log. `records` holds (key, revision, value, expiry in Unix µs or None)."""
    base = f"ms:{{{ns}}}:"
    for key, revision, value, expires in records:
        fields: dict[str, bytes | int] = {"r": revision, "v": value}
        if expires is not None:
            fields["x"] = expires
            await raw.zadd(f"{base}exp", {key: expires})
        await raw.hset(f"{base}r:{key}", mapping=fields)  # type: ignore[arg-type]
        await raw.zadd(f"{base}idx", {key: 0})
        log_fields = {"k": key, "o": "c", "v": value, "x": expires or "", "t": 1}
        await raw.xadd(f"{base}log", log_fields, id=f"{revision}-0")  # type: ignore[arg-type]
    await raw.set(f"{base}rev", max(revision for _, revision, _, _ in records))


async def test_a_layout_1_namespace_is_converted_on_first_use(store: RedisStore, raw: aioredis.Redis) -> None:
    seconds, _ = await raw.time()
    in_a_minute, a_minute_ago = (seconds + 60) * 1_000_000, (seconds - 60) * 1_000_000
    await write_layout_1(
        raw,
        store.namespace,
        [
            ("plain", 1, b"1", None),
            ("colons", 2, b":two:with:colons:", in_a_minute),
            ("expired", 3, b"3", a_minute_ago),  # Redis has not evicted it: no PEXPIREAT was set here
        ],
    )

    found = await store.batch_get(["plain", "colons", "expired"])

    assert found == {
        "plain": Record("plain", b"1", 1, None),
        "colons": Record("colons", b":two:with:colons:", 2, in_a_minute / 1_000_000),
    }
    assert (await store.list()).records == [found["colons"], found["plain"]]
    assert await store.head_cursor() == "3"
    base = f"ms:{{{store.namespace}}}:"
    assert await raw.type(f"{base}r:plain") == b"string"
    assert 0 < await raw.pttl(f"{base}r:colons") <= 60_000, "the TTL is kept"
    assert not await raw.exists(f"{base}r:expired")
    assert await raw.zrange(f"{base}idx", 0, -1) == [b"colons", b"plain"]
    # Writes continue the revisions, and a watch resumes across the upgrade.
    changes = store.watch(after="0")
    assert [(await next_change(changes)).cursor for _ in range(3)] == ["1", "2", "3"]
    written = await store.put("plain", b"new")
    assert written.revision == 4
    assert (await next_change(changes)).record == written
    # Layout-1 code is fenced off: its write script INCRs the counter before it writes anything, and its
    # reads HMGET the record; both are WRONGTYPE now, so it cannot write records layout 2 would not read.
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await raw.incr(f"{base}rev")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await raw.hmget(f"{base}r:plain", "r", "x", "v")


async def test_a_large_layout_1_namespace_is_converted_in_batches_by_concurrent_servers(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    ns = namespace()
    count = 2 * MIGRATION_BATCH + 10
    await write_layout_1(raw, ns, [(f"k{index:04}", index + 1, b"v", None) for index in range(count)])
    stores = [await open_store(redis_server, ns) for _ in range(2)]
    try:
        keys = [f"k{index:04}" for index in range(count)]
        first, second = await asyncio.gather(*(store.batch_get(keys) for store in stores))
        assert first == second
        assert [record.revision for record in first.values()] == list(range(1, count + 1))
        assert (await stores[0].put("new", b"v")).revision == count + 1
    finally:
        for store in stores:
            await store.close()
