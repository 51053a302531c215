"""The profile near-cache (ClientOptions.near_cache) against the real profile server: hits cost no call,
a write anywhere drops the value within a deadline, a read in flight across a change is not kept, and a
broken watch sends reads live again and never serves beyond max_staleness. Calls are counted by the server
(an interceptor in front of the real servicer)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from microstate.client import ClientOptions, Liveness, NearCacheOptions, Source
from microstate.client.errors import NotFound
from microstate.client.profile import v1, v2
from microstate.server.pinning import refuse_unserved_contracts
from microstate.server.profile import MICROSTATE
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer, eventually
from tests.support.processes import until, wait_for
from tests.support.unary_hooks import Behaviour, UnaryHook

WITHIN = 10.0
"""Seconds any awaited condition gets: generous, for a loaded machine."""


class CountedGets(UnaryHook):
    """Counts the profile reads the server answers; holds a GetProfile of `hold` after its handler has
    read the store and until `release` is set, so a test can order a change before its answer."""

    def __init__(self) -> None:
        super().__init__(["/microstate.profile."])
        self.calls: Counter[str] = Counter()
        self.hold: str | None = None
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        name = method.rsplit("/", 1)[1]

        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.calls[name] += 1
            response = await handler(request, context)
            if name == "GetProfile" and request.user_id == self.hold:
                self.held.set()
                await self.release.wait()
            return response

        return counted

    @property
    def reads(self) -> int:
        return self.calls["GetProfile"] + self.calls["BatchGetProfiles"]

    @property
    def total(self) -> int:
        """Every unary call the server answered (the watch is a stream, not counted)."""
        return sum(self.calls.values())


@pytest.fixture
async def counted(store: Store) -> AsyncIterator[tuple[CountedGets, RestartableServer]]:
    """The real profile server (v1 and v2 over SQLite) behind a counting interceptor."""
    hook = CountedGets()

    def attach(server: grpc.aio.Server) -> None:
        MICROSTATE.attach(server, Stores.of(store))
        refuse_unserved_contracts(server, MICROSTATE.service_names)

    server = RestartableServer(attach, [hook])
    await server.start()
    yield hook, server
    await server.stop()


Counted = tuple[CountedGets, RestartableServer]


def cached_options(target: str, **near_cache: Any) -> ClientOptions:
    return fast_options(target, near_cache=NearCacheOptions(**near_cache))


async def live_cache(client: Any) -> None:
    """Start the client's near-cache watch (any read does) and wait until it is connected."""
    await until(lambda: client.near_cache_status().liveness is Liveness.LIVE, within=WITHIN, what="watch")


async def warmed(client: Any, user_id: str) -> Any:
    """A read of `user_id` served from the near-cache, its watch started (by a read) and connected."""
    await client.get(user_id)
    await live_cache(client)
    return await cached_read(client, user_id)


async def broken_cache(client: Any) -> None:
    """Wait until the client's near-cache knows its watch broke."""
    await until(lambda: client.near_cache_status().liveness is Liveness.STALE, within=WITHIN, what="break")


async def cached_read(client: Any, user_id: str) -> Any:
    """Read `user_id` until it is served from the near-cache (the watch may not cover the first read)."""
    return await eventually(
        lambda: client.get(user_id), lambda read: read.source is Source.CACHE, within=WITHIN
    )


async def test_off_by_default_every_read_asks_the_server(counted: Counted) -> None:
    hook, server = counted
    async with v1.ProfileClient(options=fast_options(server.target)) as client:
        await client.create(v1.Profile(user_id="ada"))
        reads = [await client.get("ada") for _ in range(3)]
        assert [read.source for read in reads] == [Source.LIVE] * 3 and hook.reads == 3
        assert client.near_cache_status() is None and not client._followers


@pytest.mark.parametrize("version", [v1, v2])
async def test_a_hit_is_served_from_memory_with_no_call(counted: Counted, version: Any) -> None:
    hook, server = counted
    async with version.ProfileClient(options=cached_options(server.target)) as client:
        created = await client.create(version.Profile(user_id="ada", locale="en-GB"))
        assert (await client.get("ada")).source is Source.LIVE  # starts the watch
        await live_cache(client)
        assert (await client.get("ada")).source is Source.LIVE  # kept: the watch covers it now
        calls = hook.total
        hits = [await client.get("ada") for _ in range(50)]
        assert hook.total == calls
        assert all(hit.source is Source.CACHE and hit.fallback_reason is None for hit in hits)
        assert hits[0].value == created and hits[0].etag == created.etag and 0 <= hits[0].age < WITHIN

        batch = await client.batch_get(["ada"])
        assert batch.found["ada"].source is Source.CACHE and hook.total == calls
        status = client.near_cache_status()
        assert status.liveness is Liveness.LIVE and status.age == 0 and status.entries == 1


async def test_a_write_elsewhere_drops_the_value_within_a_deadline(counted: Counted) -> None:
    _, server = counted
    async with (
        v2.ProfileClient(options=cached_options(server.target)) as client,
        v1.ProfileClient(options=fast_options(server.target)) as writer,  # another process, another version
    ):
        await writer.create(v1.Profile(user_id="ada", display_name="Ada"))
        assert (await warmed(client, "ada")).value.name.display_name == "Ada"

        await writer.update(v1.Profile(user_id="ada", display_name="Augusta"), ["display_name"])
        fresh = await eventually(
            lambda: client.get("ada"), lambda read: read.value.name.display_name == "Augusta", within=WITHIN
        )
        assert fresh.source is Source.LIVE
        assert (await cached_read(client, "ada")).value.name.display_name == "Augusta"

        await writer.delete("ada")

        async def gone() -> bool:
            try:
                await client.get("ada")
            except NotFound:
                return True
            return False

        await until(gone, within=WITHIN, what="the delete")


async def test_its_own_writes_are_read_back_at_once(counted: Counted) -> None:
    _, server = counted
    async with v1.ProfileClient(options=cached_options(server.target)) as client:
        await client.create(v1.Profile(user_id="ada", locale="en-GB"))
        await warmed(client, "ada")
        await client.update(v1.Profile(user_id="ada", locale="fr-FR"), ["locale"])
        read = await client.get("ada")  # no waiting for the watch's event
        assert read.source is Source.LIVE and read.value.locale == "fr-FR"


async def test_an_answer_older_than_a_change_that_arrived_first_is_not_kept(counted: Counted) -> None:
    """The ordering forced: the server reads the old profile, the update commits and its event reaches
    the client, and only then does the old answer arrive. It is returned (it was the truth when read)
    but never kept: the next read is live and sees the update."""
    hook, server = counted
    async with (
        v1.ProfileClient(options=cached_options(server.target)) as client,
        v1.ProfileClient(options=fast_options(server.target)) as writer,
    ):
        await writer.create(v1.Profile(user_id="race", locale="en-GB"))
        await writer.create(v1.Profile(user_id="marker"))
        await warmed(client, "marker")  # the one entry: its drop shows the watch got this far

        hook.hold = "race"
        old = asyncio.create_task(client.get("race"))
        await asyncio.wait_for(hook.held.wait(), WITHIN)
        await writer.update(v1.Profile(user_id="race", locale="fr-FR"), ["locale"])
        await writer.update(v1.Profile(user_id="marker", locale="fr-FR"), ["locale"])
        await until(lambda: client.near_cache_status().entries == 0, within=WITHIN, what="events")
        hook.release.set()
        answer = await old
        assert answer.source is Source.LIVE and answer.value.locale == "en-GB"

        calls = hook.reads
        after = await client.get("race")
        assert after.source is Source.LIVE and after.value.locale == "fr-FR" and hook.reads == calls + 1


async def test_a_broken_watch_sends_reads_live_and_never_serves_past_max_staleness(counted: Counted) -> None:
    _, server = counted
    max_staleness = 0.5
    async with v1.ProfileClient(options=cached_options(server.target, max_staleness=max_staleness)) as client:
        await client.create(v1.Profile(user_id="ada"))
        await warmed(client, "ada")

        await server.stop()
        await broken_cache(client)
        # Within max_staleness of the break a read may still be a hit; never once it has passed.
        await until(lambda: client.near_cache_status().age > max_staleness, within=WITHIN, what="staleness")
        read = await client.get("ada")
        assert read.source is Source.SNAPSHOT  # the live read failed: the snapshot fallback, as without it

        # Back: the watch reconnects, starts a new cover (dropping what it kept), and hits resume.
        await server.start()
        await live_cache(client)
        assert client.near_cache_status().entries == 0
        assert (await cached_read(client, "ada")).value.user_id == "ada"
        async with v1.ProfileClient(options=fast_options(server.target)) as writer:
            await writer.update(v1.Profile(user_id="ada", locale="de-DE"), ["locale"])
        await eventually(lambda: client.get("ada"), lambda read: read.value.locale == "de-DE", within=WITHIN)


async def test_zero_staleness_stops_serving_as_soon_as_the_watch_breaks(counted: Counted) -> None:
    _, server = counted
    async with v1.ProfileClient(options=cached_options(server.target, max_staleness=0)) as client:
        await client.create(v1.Profile(user_id="ada"))
        await warmed(client, "ada")
        await server.stop()
        await broken_cache(client)
        assert (await client.get("ada")).source is Source.SNAPSHOT


async def test_only_the_configured_key_range_is_kept(counted: Counted) -> None:
    hook, server = counted
    async with v1.ProfileClient(options=cached_options(server.target, prefix="team-")) as client:
        for user_id in ("team-1", "other"):
            await client.create(v1.Profile(user_id=user_id))
        await warmed(client, "team-1")
        calls = hook.reads
        assert [(await client.get("other")).source for _ in range(2)] == [Source.LIVE] * 2
        assert hook.reads == calls + 2


def _sync_until(condition: Callable[[], object], what: str) -> None:
    wait_for(condition, within=WITHIN, what=what)


async def test_the_sync_twin_keeps_its_near_cache_from_a_thread(counted: Counted) -> None:
    hook, server = counted
    options = cached_options(server.target)

    def scenario() -> None:
        with v2.SyncProfileClient(options=options) as client, v2.SyncProfileClient(options=options) as writer:
            writer.create(v2.Profile(user_id="ada", locale="en-GB"))
            client.get("ada")
            _sync_until(lambda: client.near_cache_status().liveness is Liveness.LIVE, "watch")
            _sync_until(lambda: client.get("ada").source is Source.CACHE, "a hit")
            calls = hook.reads
            assert client.get("ada").source is Source.CACHE and hook.reads == calls
            follower = client._followers["_near_cache_feed"]
            assert follower.daemon and follower.is_alive()

            # Readers on several threads while another client writes: every read is a value written,
            # and once the writes stop the readers converge on the last.
            locales = [f"en-{n:02d}" for n in range(8)]
            stop = threading.Event()
            seen: set[str] = set()

            def read() -> None:
                while not stop.is_set():
                    seen.add(client.get("ada").value.locale)

            with ThreadPoolExecutor(2) as pool:
                readers = [pool.submit(read) for _ in range(2)]
                for locale in locales:
                    writer.update(v2.Profile(user_id="ada", locale=locale), ["locale"])
                _sync_until(lambda: client.get("ada").value.locale == locales[-1], "the last update")
                stop.set()
                for reader in readers:
                    reader.result()
            assert seen <= {"en-GB", *locales}
            _sync_until(lambda: client.get("ada").source is Source.CACHE, "a hit of the last value")
            assert client.get("ada").value.locale == locales[-1]
            client.close()
            assert not follower.is_alive()

    await asyncio.to_thread(scenario)


def test_near_cache_options_are_checked() -> None:
    with pytest.raises(ValueError):
        NearCacheOptions(max_staleness=-1)
    with pytest.raises(ValueError):
        NearCacheOptions(max_entries=0)
    assert dataclasses.replace(ClientOptions(), near_cache=NearCacheOptions()).near_cache is not None
    assert ClientOptions().near_cache is None
