"""What is specific to the MongoDB store: layout and indexes, write concern, the transaction per write, the
change-stream wake-up and its polling fallback, outages and restarts of the server.

The behaviour every backend shares is in tests/conformance/; these tests look inside MongoDB or break it.
Tests that only read and write run against every Mongo target (SecantusDB, and MICROSTATE_TEST_MONGO_URL
when set); tests that stop or restart a server use a SecantusDB of their own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import AsyncMongoClient, monitoring

from microstate.server.store.base import ChangeKind, InvalidCursor, StoreMisconfigured, StoreUnavailable
from microstate.server.store.mongo import MongoStore
from tests.conformance.conftest import with_query
from tests.conformance.waiting import take, wait_until, watching
from tests.support.mongo_server import (
    ENV_EXTERNAL_URL,
    MongoServer,
    MongoTarget,
    dead_mongo_url,
    mongo_target_names,
    mongo_url_target,
    running_mongo_server,
)

pytestmark = pytest.mark.mongo
__all__ = ["mongo_url_target"]  # a fixture: imported so the tests below can use it

FAST = 3.0
"""An unreachable or stopped server must be reported within this many seconds."""


def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(mongo_url_target: MongoTarget) -> AsyncIterator[MongoStore]:
    store = await MongoStore.open(mongo_url_target.url, namespace())
    yield store
    await store.close()


@pytest.fixture
async def raw(mongo_url_target: MongoTarget) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A plain client on the same server, to look at what the store wrote."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url_target.url)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def private_server() -> Iterator[MongoServer]:
    """A server of this module's own, for tests that stop, kill or restart it (each leaves it running)."""
    with running_mongo_server() as server:
        yield server


@pytest.fixture(scope="module")
def auth_server() -> Iterator[MongoServer]:
    """A server that requires authentication and has no users."""
    with running_mongo_server(auth=True) as server:
        yield server


@pytest.fixture
def own_server(private_server: MongoServer) -> MongoServer:
    private_server.start()  # a no-op unless an earlier test failed while the server was down
    return private_server


class CommandLog(monitoring.CommandListener):
    """The commands a client sent, to check what the store asks of the server."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append({"name": event.command_name, **event.command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for command in self.commands if command["name"] == name]


# -- layout and start-up ----------------------------------------------------------------------------------


async def test_one_collection_per_namespace_with_a_ttl_index_created_idempotently(
    mongo_url_target: MongoTarget, raw: AsyncMongoClient[dict[str, Any]]
) -> None:
    ns = namespace()
    first = await MongoStore.open(mongo_url_target.url, ns)
    await first.ping()  # a server's start-up: open, then the first ping prepares the namespace
    await first.close()
    indexes_once = await raw.microstate[f"records.{ns}"].index_information()

    second = await MongoStore.open(mongo_url_target.url, ns)  # the same start-up again: nothing changes
    await second.ping()
    await second.close()

    indexes_twice = await raw.microstate[f"records.{ns}"].index_information()
    assert indexes_twice == indexes_once
    assert indexes_once["expires_at_ttl"]["key"] == [("expires_at", 1)]
    assert indexes_once["expires_at_ttl"]["expireAfterSeconds"] == 0
    assert {f"records.{ns}", f"changes.{ns}"} <= set(await raw.microstate.list_collection_names())


async def test_records_the_log_and_the_head_are_written_together(
    store: MongoStore, raw: AsyncMongoClient[dict[str, Any]]
) -> None:
    record = await store.put("user/1", b"alice", ttl=60)
    await store.delete("user/1")

    db = raw.microstate
    assert await db[f"records.{store.namespace}"].find_one({"_id": "user/1"}) is None
    log = await db[f"changes.{store.namespace}"].find().sort("_id", 1).to_list(None)
    assert [(entry["_id"], entry["kind"], entry["key"]) for entry in log] == [
        (record.revision, "created", "user/1"),
        (record.revision + 1, "deleted", "user/1"),
    ]
    bookkeeping = await db.microstate_namespaces.find_one({"_id": store.namespace})
    assert bookkeeping is not None and bookkeeping["head"] == record.revision + 1


async def test_the_database_comes_from_the_url(
    mongo_url_target: MongoTarget, raw: AsyncMongoClient[Any]
) -> None:
    database = f"db_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(mongo_url_target.url)._replace(path=f"/{database}"))  # keeps hosts and options
    store = await MongoStore.open(url, "profile")
    try:
        await store.put("k", b"v")
    finally:
        await store.close()

    assert await raw[database]["records.profile"].count_documents({}) == 1
    await raw.drop_database(database)


async def test_a_bad_namespace_is_rejected_before_connecting() -> None:
    with pytest.raises(ValueError):
        await MongoStore.open(dead_mongo_url(), "no spaces")


# -- write concern and read preference --------------------------------------------------------------------


async def test_writes_commit_with_majority_write_concern_by_default(mongo_url_target: MongoTarget) -> None:
    commands = CommandLog()
    store = await MongoStore.open(mongo_url_target.url, namespace(), event_listeners=[commands])
    try:
        await store.put("k", b"v")
    finally:
        await store.close()

    commits = commands.named("commitTransaction")
    assert commits and all(commit["writeConcern"]["w"] == "majority" for commit in commits)
    assert store.capabilities.durable


async def test_the_url_can_choose_another_write_concern(mongo_url_target: MongoTarget) -> None:
    commands = CommandLog()
    separator = "&" if "?" in mongo_url_target.url else "?"
    store = await MongoStore.open(
        f"{mongo_url_target.url}{separator}w=1", namespace(), event_listeners=[commands]
    )
    try:
        await store.put("k", b"v")
    finally:
        await store.close()

    assert [commit["writeConcern"]["w"] for commit in commands.named("commitTransaction")][-1] == 1
    assert not store.capabilities.durable, "w=1 can lose acknowledged writes on failover"


@pytest.mark.filterwarnings("error::UserWarning")  # PyMongo warns about a URI option it does not know
async def test_store_settings_and_pymongo_options_share_the_url(mongo_url_target: MongoTarget) -> None:
    commands = CommandLog()
    settings = "change_streams=false&W=1&readPreference=primaryPreferred&retention=50&conflict_budget=0.5"
    store = await MongoStore.open(
        with_query(mongo_url_target.url, settings), namespace(), event_listeners=[commands]
    )
    try:
        await store.put("k", b"v")
    finally:
        await store.close()

    assert not store.uses_change_streams, "change_streams=false from the URL"
    assert [commit["writeConcern"]["w"] for commit in commands.named("commitTransaction")][-1] == 1


@pytest.mark.parametrize("query", ["replicaSett=rs0", "retension=10", "change_streams=perhaps"])
async def test_a_key_neither_the_store_nor_pymongo_knows_is_refused_naming_it(query: str) -> None:
    key = query.partition("=")[0]
    with pytest.raises(ValueError, match=rf"'?{key}'?[ =]"):
        await MongoStore.open(with_query(dead_mongo_url(), query), namespace())


async def test_batch_get_is_one_round_trip(mongo_url_target: MongoTarget) -> None:
    commands = CommandLog()
    store = await MongoStore.open(mongo_url_target.url, namespace(), event_listeners=[commands])
    try:
        for i in range(5):
            await store.put(f"k{i}", b"v")
        commands.commands.clear()
        found = await store.batch_get([f"k{i}" for i in range(1000)])
        sent = [command["name"] for command in commands.commands]
    finally:
        await store.close()

    assert sorted(found) == [f"k{i}" for i in range(5)]
    assert sent == ["find"]


# -- semantics a Mongo implementation could easily get wrong -----------------------------------------------


async def test_an_unconditional_put_over_an_expired_record_is_a_creation(store: MongoStore) -> None:
    await store.put("k", b"old", ttl=0.2)

    async def expired() -> bool:
        return await store.get("k") is None

    await wait_until(expired, what="the record expires")
    start = await store.head_cursor()
    await store.put("k", b"new")

    async with watching(store, after=start) as changes:
        (change,) = await take(changes, 1)
    assert change.kind is ChangeKind.CREATED


async def test_a_cursor_ahead_of_the_log_is_invalid(store: MongoStore) -> None:
    """Another namespace's cursor, or one from before the database was dropped and recreated."""
    ahead = str(int(await store.head_cursor()) + 10)

    with pytest.raises(InvalidCursor):
        async with watching(store, after=ahead) as changes:
            await take(changes, 1)


async def test_a_cancelled_write_leaves_the_store_consistent(store: MongoStore) -> None:
    start = int(await store.head_cursor())
    writes = [asyncio.create_task(store.put(f"k{i}", b"v")) for i in range(5)]
    await asyncio.sleep(0)  # let them start: the cancellation must hit writes in flight
    for write in writes:
        write.cancel()
    await asyncio.gather(*writes, return_exceptions=True)

    after = await store.put("after", b"v")

    # Whatever was cancelled either committed completely (record, log entry, revision) or left no trace.
    async with watching(store, after=str(start)) as changes:
        logged = await take(changes, after.revision - start)
    assert logged[-1].record == after
    assert [change.record for change in logged[:-1]] == [
        await store.get(change.key) for change in logged[:-1]
    ]


async def test_closing_ends_watches_and_is_safe_twice(mongo_url_target: MongoTarget) -> None:
    store = await MongoStore.open(mongo_url_target.url, namespace())
    async with watching(store, after=await store.head_cursor()) as changes:
        await store.put("k", b"v")
        await take(changes, 1)  # the watch is running
        pending = asyncio.ensure_future(take(changes, 1))
        await store.close()
        with pytest.raises(StoreUnavailable):
            await pending
    await store.close()


# -- the change-stream wake-up and its polling fallback ----------------------------------------------------


async def test_change_streams_wake_a_watch_long_before_the_poll_would(mongo_url_target: MongoTarget) -> None:
    ns = namespace()
    watcher = await MongoStore.open(mongo_url_target.url, ns, poll_interval=30.0)
    writer = await MongoStore.open(mongo_url_target.url, ns)
    try:
        async with watching(watcher, after=await watcher.head_cursor()) as changes:
            written = await writer.put("k", b"v")
            (change,) = await take(changes, 1, within=10.0)
    finally:
        await watcher.close()
        await writer.close()

    assert change.record == written
    assert watcher.uses_change_streams


async def test_without_change_streams_a_watch_polls_the_log() -> None:
    with running_mongo_server(standalone=True) as server:
        ns = namespace()
        watcher = await MongoStore.open(server.url, ns, poll_interval=0.1)
        writer = await MongoStore.open(server.url, ns)
        try:
            async with watching(watcher, after=await watcher.head_cursor()) as changes:
                written = [await writer.put(f"k{i}", b"v") for i in range(3)]
                seen = await take(changes, 3)

                async def polling() -> bool:
                    return not watcher.uses_change_streams

                await wait_until(polling, what="the store notices the server has no change streams")
        finally:
            await watcher.close()
            await writer.close()

    assert [change.record for change in seen] == written


# -- outages and restarts ---------------------------------------------------------------------------------


async def test_an_unreachable_server_fails_fast_from_the_first_call_not_at_open() -> None:
    started = time.monotonic()
    store = await MongoStore.open(dead_mongo_url(), namespace())  # it may come up later: open does not wait
    try:
        assert time.monotonic() - started < FAST
        for call in (store.ping(), store.put("k", b"v"), store.get("k")):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as raised:
                await call
            assert time.monotonic() - started < FAST
            assert not isinstance(raised.value, StoreMisconfigured)
    finally:
        await store.close()


async def test_a_store_opened_before_its_server_started_works_once_it_answers(
    own_server: MongoServer,
) -> None:
    own_server.stop()
    ns = namespace()
    store = await MongoStore.open(own_server.url, ns)
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        await asyncio.to_thread(own_server.start)
        await wait_until(lambda: _answers(store), what="the store reaches the server that came up")

        written = await store.put("k", b"v")
        assert await store.get("k") == written
        raw: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_server.url)
        indexes = await raw.microstate[f"records.{ns}"].index_information()
        await raw.close()
        assert indexes["expires_at_ttl"]["expireAfterSeconds"] == 0  # prepared once the server answered
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("credentials", "refusal"),
    [("nobody:wrong@", "authentication failed"), ("", "requires authentication")],
)
async def test_credentials_the_server_refuses_are_misconfigured_not_an_outage(
    auth_server: MongoServer, credentials: str, refusal: str
) -> None:
    """The first call of a store, as at a server's start (after a refusal PyMongo marks the server unknown:
    later calls of the same client may time out selecting it instead, which is StoreUnavailable)."""
    url = f"mongodb://{credentials}127.0.0.1:{auth_server.port}/"
    for first_call in (MongoStore.ping, partial(MongoStore.put, key="k", value=b"v")):
        store = await MongoStore.open(url, namespace())
        try:
            with pytest.raises(StoreMisconfigured, match=refusal):
                await first_call(store)
        finally:
            await store.close()


@pytest.mark.parametrize("url", ["mongodb://127.0.0.1:port/", "mongodb://a@b@127.0.0.1/"])
async def test_a_malformed_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)port|escaped"):
        await MongoStore.open(url, namespace())


async def test_calls_fail_fast_while_the_server_is_down_and_work_again_after(own_server: MongoServer) -> None:
    store = await MongoStore.open(own_server.url, namespace())
    try:
        before = await store.put("k", b"before")
        own_server.stop()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get("k"),
            lambda: store.put("k", b"during"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            assert time.monotonic() - started < FAST

        await asyncio.to_thread(own_server.start)
        await wait_until(lambda: _answers(store), what="the same store reconnects")
        assert await store.get("k") == before
        assert (await store.put("k", b"after", if_match=before.revision)).revision > before.revision
    finally:
        await store.close()


async def test_acknowledged_writes_survive_a_server_crash(own_server: MongoServer) -> None:
    store = await MongoStore.open(own_server.url, namespace())
    try:
        written = [await store.put(f"k{i}", str(i).encode()) for i in range(20)]
        own_server.kill()
        await asyncio.to_thread(own_server.start)
        await wait_until(lambda: _answers(store), what="the same store reconnects")

        assert await store.batch_get([record.key for record in written]) == {r.key: r for r in written}
        assert await store.head_cursor() == str(written[-1].revision)
    finally:
        await store.close()


async def test_a_watch_survives_a_server_restart_without_gaps_or_duplicates(own_server: MongoServer) -> None:
    ns = namespace()
    watcher = await MongoStore.open(own_server.url, ns)
    writer = await MongoStore.open(own_server.url, ns)
    try:
        async with watching(watcher, after=await watcher.head_cursor()) as changes:
            before = await writer.put("before", b"v")
            assert [change.record for change in await take(changes, 1)] == [before]

            await asyncio.to_thread(own_server.restart)
            await wait_until(lambda: _answers(writer), what="the writer reconnects")
            after = [await writer.put(f"after{i}", b"v") for i in range(3)]

            seen = await take(changes, 3, within=15.0)
    finally:
        await watcher.close()
        await writer.close()

    assert [change.record for change in seen] == after


async def test_a_watch_gives_up_after_its_outage_budget(own_server: MongoServer) -> None:
    # A short server selection timeout: this test is about the budget, not about how fast a call fails.
    url = f"{own_server.url}?serverSelectionTimeoutMS=200"
    store = await MongoStore.open(url, namespace(), watch_outage_budget=0.5)
    try:
        async with watching(store, after=None) as changes:
            own_server.stop()
            with pytest.raises(StoreUnavailable):
                await take(changes, 1, within=10.0)
    finally:
        own_server.start()
        await store.close()


async def _answers(store: MongoStore) -> bool:
    try:
        await store.ping()
    except StoreUnavailable:
        return False
    return True


# -- the test support itself -------------------------------------------------------------------------------


def test_an_external_server_is_a_target_when_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_EXTERNAL_URL, raising=False)
    assert mongo_target_names() == ["secantus"]

    monkeypatch.setenv(ENV_EXTERNAL_URL, "mongodb://db.example:27017/?replicaSet=rs0")
    assert mongo_target_names() == ["secantus", "external"]
