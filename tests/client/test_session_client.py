"""The async session client against the real session server: validation fails closed unless a call opts
in to the cache, the cache is bounded by N, by the session's life and by revocations, retried creates and
concurrent refreshes give one session and one successor, and the rest of the contract round-trips."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from microstate.client import SnapshotOptions
from microstate.client.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from microstate.client.session.v1 import (
    DEFAULT_TARGET,
    MAX_ACCEPT_CACHED_FOR,
    Read,
    RevocationType,
    Session,
    SessionClient,
    Source,
)
from microstate.server.session import MICROSTATE, attach_with
from microstate.server.session.tokens import ServerKey
from microstate.server.store import open_store
from microstate.session.v1 import session_pb2 as pb
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.session_harness import LONG, WITHIN, cached, session_server  # noqa: F401
from tests.support.inproc import serve_in_process
from tests.support.unary_hooks import Behaviour, UnaryHook


@pytest.fixture
async def client(session_server: RestartableServer) -> AsyncIterator[SessionClient]:  # noqa: F811
    async with SessionClient(options=fast_options(session_server.target)) as client:
        yield client


async def _served_while_down(
    server: RestartableServer, validate: Callable[[], Awaitable[Read[Session]]]
) -> tuple[list[tuple[float, float]], float]:
    """Stop `server`, then call `validate` until it raises Unavailable: the (wall time, age) of each answer
    the cache served meanwhile (there must be some), and the time it first raised."""
    await server.stop()
    served: list[tuple[float, float]] = []
    deadline = time.monotonic() + LONG / 10
    while True:
        try:
            read = await validate()
        except Unavailable:
            assert served, "nothing was served from the cache while the server was down"
            return served, time.time()
        served.append((time.time(), read.age))
        assert read.source is Source.CACHE
        assert time.monotonic() < deadline, "the cached answer was never refused"
        await asyncio.sleep(0.01)


async def test_validate_is_live_by_default_and_fails_closed_when_the_server_is_down(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
) -> None:
    issued = await client.create("ada", scopes=["read"])
    read = await client.validate(issued.token, ["read"])
    assert read.source is Source.LIVE and read.fallback_reason is None
    assert read.value.session_id == issued.session.session_id and read.value.user_id == "ada"
    await session_server.stop()
    with pytest.raises(Unavailable):
        await client.validate(issued.token)
    with pytest.raises(Unavailable):  # opting in to the cache changes nothing without a cached answer
        await client.validate(issued.token, accept_cached_for=MAX_ACCEPT_CACHED_FOR)


async def test_a_cached_answer_is_served_while_the_server_is_down_for_at_most_n_seconds(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
) -> None:
    n = 2.0
    issued = await client.create("ada", idle_ttl=LONG, max_ttl=LONG)
    first = await cached(client, issued.token, n)
    served, refused_at = await _served_while_down(
        session_server, lambda: client.validate(issued.token, accept_cached_for=n)
    )
    assert max(age for _, age in served) < n
    assert refused_at >= first.fetched_at + n - 0.25  # the entry's age counts from before its call


async def test_a_cached_answer_never_outlives_its_session(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
) -> None:
    issued = await client.create("ada", idle_ttl=3.0, max_ttl=3.0)
    expires = issued.session.expire_time.ToNanoseconds() / 1e9
    await cached(client, issued.token, MAX_ACCEPT_CACHED_FOR)
    served, refused_at = await _served_while_down(
        session_server, lambda: client.validate(issued.token, accept_cached_for=MAX_ACCEPT_CACHED_FOR)
    )
    assert max(when for when, _ in served) < expires
    assert refused_at >= expires - 0.25


async def _refused_within(client: SessionClient, token: str) -> float:
    """Seconds until validating `token` (cache accepted) is refused; fails after WITHIN seconds."""
    started = time.monotonic()
    while time.monotonic() - started < WITHIN:
        try:
            await client.validate(token, accept_cached_for=MAX_ACCEPT_CACHED_FOR)
        except Unauthenticated:
            return time.monotonic() - started
        await asyncio.sleep(0.005)
    raise AssertionError(f"the revoked session was still served from the cache after {WITHIN}s")


@pytest.mark.parametrize("revocation", ["RevokeSession", "RevokeUserSessions"])
async def test_a_revocation_by_another_client_evicts_the_cached_answer(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
    revocation: str,
) -> None:
    doomed, spared, other_user = (
        await client.create("ada"),
        await client.create("ada"),
        await client.create("bob"),
    )
    for issued in (doomed, spared, other_user):
        await cached(client, issued.token)
    async with SessionClient(options=fast_options(session_server.target)) as admin:
        if revocation == "RevokeSession":
            await admin.revoke(doomed.session.session_id)
        else:
            await admin.revoke_user("ada", except_session_id=spared.session.session_id)
    # The deadline in _refused_within is the bound; the cache would serve it for 30 s otherwise.
    await _refused_within(client, doomed.token)
    for kept in (spared, other_user):
        assert (await client.validate(kept.token, accept_cached_for=30)).source is Source.CACHE


async def test_negative_answers_are_never_cached(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
) -> None:
    reader, revoked = await client.create("ada", scopes=["read"]), await client.create("ada")
    await client.revoke(revoked.session.session_id)
    await cached(client, reader.token)  # the watch is connected: answers are being cached
    refusals: list[tuple[str, tuple[str, ...], type[Exception]]] = [
        ("mss_not-a-token", (), Unauthenticated),
        (revoked.token, (), Unauthenticated),
        (reader.token, ("write",), PermissionDenied),
    ]
    for token, scopes, refused in refusals:
        for _ in range(2):
            with pytest.raises(refused):
                await client.validate(token, scopes, accept_cached_for=30)
    assert (await client.validate(reader.token, ["read"], accept_cached_for=30)).source is Source.CACHE
    await session_server.stop()
    for token, scopes, _ in refusals:  # asked live again, and the server is gone
        with pytest.raises(Unavailable):
            await client.validate(token, scopes, accept_cached_for=30)


async def test_accept_cached_for_is_bounded_by_the_refresh_grace(client: SessionClient) -> None:
    for seconds in (0, -1, MAX_ACCEPT_CACHED_FOR + 1):
        with pytest.raises(ValueError, match="accept_cached_for"):
            await client.validate("mss_x", accept_cached_for=seconds)


async def test_a_create_retried_with_its_request_id_returns_the_same_session(client: SessionClient) -> None:
    first = await client.create("ada", scopes=["read"], request_id="req-1")
    again = await client.create("ada", scopes=["read"], request_id="req-1")
    assert again.session.session_id == first.session.session_id
    assert (again.token, again.refresh_token) == (first.token, first.refresh_token)
    assert [s.session_id async for s in client.list_user_all("ada")] == [first.session.session_id]
    with pytest.raises(AlreadyExists) as caught:
        await client.create("ada", scopes=["write"], request_id="req-1")
    assert caught.value.reason == "REQUEST_ID_ALREADY_USED"


class LoseFirstAnswer(UnaryHook):
    """Lets the first call of `method` run to completion, then loses its answer as a dropped connection
    would: the client gets UNAVAILABLE after the response headers (the write sent them first), so gRPC
    itself cannot retry it."""

    def __init__(self, method: str) -> None:
        super().__init__([method])
        self.request_ids: list[str] = []

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        async def lossy(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.request_ids.append(request.request_id)
            response = await handler(request, context)
            if len(self.request_ids) == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the answer was lost")
            return response

        return lossy


async def test_a_create_whose_answer_was_lost_is_sent_again_and_applies_once(tmp_path: Path) -> None:
    lose = LoseFirstAnswer("/microstate.session.v1.SessionService/CreateSession")
    store = await open_store("sqlite:///" + str(tmp_path / "sessions.db"), "session")
    microstate = dataclasses.replace(MICROSTATE, attach=attach_with(ServerKey(secrets.token_bytes(32))))
    try:
        async with (
            serve_in_process(microstate, store, interceptors=[lose]) as target,
            SessionClient(options=fast_options(target)) as client,
        ):
            issued = await client.create("ada")  # no request_id: the client makes one
            listed = [session.session_id async for session in client.list_user_all("ada")]
            assert (await client.validate(issued.token)).value.session_id == issued.session.session_id
    finally:
        await store.close()
    assert len(lose.request_ids) == 2 and lose.request_ids[0] == lose.request_ids[1] != ""
    assert listed == [issued.session.session_id]


@pytest.mark.parametrize("at_once", [2, 8])
async def test_concurrent_refreshes_through_the_sdk_get_one_successor(
    session_server: RestartableServer,  # noqa: F811
    at_once: int,
) -> None:
    clients = [SessionClient(options=fast_options(session_server.target)) for _ in range(at_once)]
    try:
        issued = await clients[0].create("ada")
        for each in clients:
            await each.check_contract()  # every channel connected, so the refreshes really race
        refreshed = await asyncio.gather(*(each.refresh(issued.refresh_token) for each in clients))
        assert len({(r.token, r.refresh_token) for r in refreshed}) == 1
        assert {r.session.refresh_count for r in refreshed} == {1}
        successor = refreshed[0]
        assert (await clients[0].validate(successor.token)).value.session_id == issued.session.session_id
        assert (await clients[0].refresh(successor.refresh_token)).session.refresh_count == 2
    finally:
        for each in clients:
            await each.close()


async def test_get_list_and_revoke(client: SessionClient) -> None:
    created = [await client.create("ada", attributes={"device": f"d{i}"}) for i in range(5)]
    read = await client.get(created[0].session.session_id)
    assert read.source is Source.LIVE and read.value.attributes["device"] == "d0"
    assert read.value.state == pb.SESSION_STATE_ACTIVE
    page = await client.list_user("ada", page_size=2)
    assert len(page.items) <= 2 and page.next_page_token
    ids = sorted(issued.session.session_id for issued in created)
    assert [s.session_id async for s in client.list_user_all("ada", page_size=2)] == ids
    revoked = await client.revoke(ids[0])
    assert revoked.state == pb.SESSION_STATE_REVOKED and revoked.revoke_reason == pb.REVOKE_REASON_REVOKED
    assert (await client.revoke(ids[0])).state == pb.SESSION_STATE_REVOKED  # again: nothing changes
    response = await client.revoke_user("ada", except_session_id=ids[1])
    assert response.except_session_id == ids[1]
    assert [s.session_id async for s in client.list_user_all("ada")] == [ids[1]]
    with pytest.raises(NotFound):
        await client.get("0" * 32)


async def test_watch_revocations_reports_and_resumes(client: SessionClient) -> None:
    one, two = await client.create("ada"), await client.create("bob")
    watch = client.watch_revocations()
    first = asyncio.ensure_future(anext(watch))
    # An empty resume token starts at the end of the log once the stream is open: revoke until seen.
    deadline = time.monotonic() + WITHIN
    while not first.done():
        assert time.monotonic() < deadline, "the watch saw no revocation"
        await client.revoke(one.session.session_id)
        await asyncio.wait({first}, timeout=0.05)
    event = first.result()
    assert event.revocation_type is RevocationType.SESSION and event.session_id == one.session.session_id
    assert str(event.revocation_type) == "SESSION" and event.revoke_time is not None
    await client.revoke_user("bob")
    following = await asyncio.wait_for(anext(watch), WITHIN)
    await watch.aclose()
    assert following.revocation_type is RevocationType.USER and following.user_id == "bob"
    resumed = client.watch_revocations(resume_token=event.resume_token)
    assert (await asyncio.wait_for(anext(resumed), WITHIN)).resume_token == following.resume_token
    await resumed.aclose()
    assert two.session.user_id == "bob"


async def test_check_contract_passes_against_the_session_server(client: SessionClient) -> None:
    await client.check_contract()


def test_target_and_options_come_from_the_session_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MICROSTATE_SESSION_TARGET", raising=False)
    assert SessionClient().target == DEFAULT_TARGET == f"localhost:{MICROSTATE.default_port}"
    monkeypatch.setenv("MICROSTATE_SESSION_TARGET", "sessions.internal:7000")
    monkeypatch.setenv("MICROSTATE_SESSION_TIMEOUT", "2.5")
    client = SessionClient()
    assert client.target == "sessions.internal:7000" and client.options.timeout == 2.5


async def test_nothing_of_a_session_is_kept_as_a_snapshot(
    session_server: RestartableServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "snapshots"
    options = fast_options(session_server.target, snapshot=SnapshotOptions(path=str(path) + "/"))
    async with SessionClient(options=options) as client:
        issued = await client.create("ada")
        await client.get(issued.session.session_id)
        assert [s.session_id async for s in client.list_user_all("ada")] == [issued.session.session_id]
        await cached(client, issued.token)
    assert not path.exists() or not any(path.iterdir())


async def test_close_ends_the_revocation_watch(client: SessionClient) -> None:
    issued = await client.create("ada")
    await cached(client, issued.token)
    follower = client._followers.get("_cache_feed")
    assert follower is not None and not follower.done()
    await client.close()
    assert follower.done()


def test_an_issued_session_does_not_print_its_tokens() -> None:
    from microstate.client.session.v1 import IssuedSession

    issued = IssuedSession(Session(session_id="s"), "mss_secret", "msr_secret")
    assert "secret" not in repr(issued) and "secret" not in str(issued)


async def test_answers_cached_before_the_watch_lost_its_place_are_asked_again(
    session_server: RestartableServer,  # noqa: F811
    client: SessionClient,
) -> None:
    # No revocation seen yet, so the watch has no resume token: once the server is back, revocations made
    # while it was away (through another server) cannot be replayed, and the cache starts over.
    issued = await client.create("ada")
    await cached(client, issued.token)
    await session_server.stop()
    assert (await client.validate(issued.token, accept_cached_for=30)).source is Source.CACHE
    await session_server.start()
    deadline = time.monotonic() + WITHIN
    while (await client.validate(issued.token, accept_cached_for=30)).source is Source.CACHE:
        assert time.monotonic() < deadline, "the cache was kept across a watch that lost its place"
        await asyncio.sleep(0.01)
