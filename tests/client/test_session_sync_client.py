"""The sync session client does what the async one does, its revocation watch in a daemon thread. Its calls
run in worker threads: the server under test runs on this test's event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from microstate.client.errors import Unauthenticated, Unavailable
from microstate.client.session.v1 import Read, Session, Source, SyncSessionClient
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.session_harness import LONG, WITHIN, session_server  # noqa: F401
from tests.support.processes import wait_for

T = TypeVar("T")


async def _in_thread(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def _cached(client: SyncSessionClient, token: str, accept_for: float = 30.0) -> Read[Session]:
    def answer() -> Read[Session] | None:
        read = client.validate(token, accept_cached_for=accept_for)
        return read if read.source is Source.CACHE else None

    return wait_for(answer, within=WITHIN, what="a cached validation")


def _refused(client: SyncSessionClient, token: str) -> bool:
    try:
        client.validate(token, accept_cached_for=30)
    except Unauthenticated:
        return True
    return False


async def test_the_sync_twin_caches_fails_closed_and_hears_revocations_in_a_thread(
    session_server: RestartableServer,  # noqa: F811
) -> None:
    client = SyncSessionClient(options=fast_options(session_server.target))
    admin = SyncSessionClient(options=fast_options(session_server.target))
    try:
        doomed = await _in_thread(lambda: client.create("ada", idle_ttl=LONG, max_ttl=LONG))
        kept = await _in_thread(lambda: client.create("ada", idle_ttl=LONG, max_ttl=LONG))
        assert (await _in_thread(lambda: client.validate(doomed.token))).source is Source.LIVE
        await _in_thread(lambda: _cached(client, doomed.token))
        await _in_thread(lambda: _cached(client, kept.token))
        follower = client._followers.get("_cache_feed")
        assert follower is not None and follower.is_alive() and follower.daemon

        await _in_thread(lambda: admin.revoke(doomed.session.session_id))
        await _in_thread(
            lambda: wait_for(lambda: _refused(client, doomed.token), within=WITHIN, what="eviction")
        )

        await session_server.stop()
        cached = await _in_thread(lambda: client.validate(kept.token, accept_cached_for=30))
        assert cached.source is Source.CACHE and cached.value.session_id == kept.session.session_id
        with pytest.raises(Unavailable):
            await _in_thread(lambda: client.validate(kept.token))  # no opt-in: fails closed
    finally:
        await _in_thread(client.close)
        await _in_thread(admin.close)
    assert not follower.is_alive()


@pytest.mark.parametrize("at_once", [2, 8])
async def test_concurrent_refreshes_from_threads_get_one_successor(
    session_server: RestartableServer,  # noqa: F811
    at_once: int,
) -> None:
    def race() -> set[tuple[str, str, int]]:
        with SyncSessionClient(options=fast_options(session_server.target)) as client:
            issued = client.create("ada")
            client.check_contract()  # connected, so the refreshes really race
            start = threading.Barrier(at_once)

            def refresh() -> tuple[str, str, int]:
                start.wait(timeout=WITHIN)
                refreshed = client.refresh(issued.refresh_token)
                return refreshed.token, refreshed.refresh_token, refreshed.session.refresh_count

            with ThreadPoolExecutor(at_once) as pool:
                return set(pool.map(lambda _: refresh(), range(at_once)))

    outcomes = await _in_thread(race)
    assert len(outcomes) == 1 and next(iter(outcomes))[2] == 1


async def test_the_sync_twin_retried_create_list_and_get(
    session_server: RestartableServer,  # noqa: F811
) -> None:
    def scenario() -> None:
        with SyncSessionClient(options=fast_options(session_server.target)) as client:
            first = client.create("ada", request_id="req-1")
            again = client.create("ada", request_id="req-1")
            assert again.session.session_id == first.session.session_id and again.token == first.token
            assert [s.session_id for s in client.list_user_all("ada")] == [first.session.session_id]
            assert client.get(first.session.session_id).source is Source.LIVE

    await _in_thread(scenario)
