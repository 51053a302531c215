"""Refresh-token rotation on every backend: concurrent refreshes share one successor, a spent refresh token
keeps its successor for the grace period only, and its reuse after that revokes the whole session."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from microstate.server.kit.access import Unauthenticated
from microstate.server.session.domain import Issued, NewSession, SessionDomain
from microstate.server.session.model import RevokeReason
from microstate.server.session.rules import MAX_SPENT_REFRESH_DIGESTS, REFRESH_GRACE_NS
from microstate.server.session.tokens import REFRESH_TOKEN, ServerKey
from microstate.server.store import Store
from tests.conformance.conftest import StoreFactory
from tests.session.conftest import SECOND, Clock

GRACE = REFRESH_GRACE_NS / SECOND


async def refuses(call: Any) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await call
    assert caught.value.reason == "SESSION_INVALID"


async def test_a_refresh_rotates_both_tokens(domain: SessionDomain, clock: Clock) -> None:
    created = await domain.create(NewSession("ada", scopes=["read"]))
    clock.advance(5)

    refreshed = await domain.refresh(created.refresh_token)

    assert refreshed.token != created.token and refreshed.refresh_token != created.refresh_token
    data = refreshed.session.data
    assert (data.session_id, data.generation, data.refresh_time_ns) == (
        created.session.data.session_id,
        1,
        clock.now,
    )
    assert (await domain.validate(refreshed.token, ["read"])).data == data


@pytest.mark.parametrize("refreshers", [2, 5, 8])
async def test_concurrent_refreshes_in_one_server_get_exactly_one_successor(
    domain: SessionDomain, refreshers: int
) -> None:
    created = await domain.create(NewSession("ada"))

    results = await asyncio.gather(*(domain.refresh(created.refresh_token) for _ in range(refreshers)))

    assert_one_successor(results)
    await domain.validate(results[0].token, [])


@pytest.mark.parametrize("refreshers", [2, 8])
async def test_concurrent_refreshes_in_several_servers_get_exactly_one_successor(
    store_factory: StoreFactory, key: ServerKey, clock: Clock, refreshers: int
) -> None:
    """Each refresher has its own store connection and domain (so no shared lock): the store's
    compare-and-set decides, and the losers find the winner's successor."""
    servers = [SessionDomain(await store_factory(), key, clock=clock) for _ in range(refreshers)]
    created = await servers[0].create(NewSession("ada"))

    results = await asyncio.gather(*(server.refresh(created.refresh_token) for server in servers))

    assert_one_successor(results)
    for server in servers:
        await server.validate(results[-1].token, [])


def assert_one_successor(results: list[Issued]) -> None:
    assert len({(issued.token, issued.refresh_token) for issued in results}) == 1
    assert {issued.session.data.generation for issued in results} == {1}


async def test_within_the_grace_period_the_spent_tokens_still_work(
    domain: SessionDomain, clock: Clock
) -> None:
    created = await domain.create(NewSession("ada"))
    refreshed = await domain.refresh(created.refresh_token)
    clock.advance(GRACE - 0.001)

    await domain.validate(created.token, [])  # a request in flight during the refresh
    again = await domain.refresh(created.refresh_token)  # a second tab that refreshed late

    assert (again.token, again.refresh_token) == (refreshed.token, refreshed.refresh_token)
    clock.advance(0.001)
    await refuses(domain.validate(created.token, []))
    await domain.validate(refreshed.token, [])


async def test_a_spent_refresh_token_after_the_grace_period_revokes_the_session(
    domain: SessionDomain, clock: Clock
) -> None:
    created = await domain.create(NewSession("ada"))
    thief = await domain.refresh(created.refresh_token)
    clock.advance(GRACE)

    await refuses(domain.refresh(created.refresh_token))  # the owner comes back with the spent token

    await refuses(domain.validate(thief.token, []))
    await refuses(domain.refresh(thief.refresh_token))
    view = await domain.get(created.session.data.session_id)
    assert (view.revoke_reason, view.revoke_time_ns) == (RevokeReason.REFRESH_TOKEN_REUSED, clock.now)


async def test_an_older_spent_refresh_token_revokes_the_session_even_within_the_grace_period(
    domain: SessionDomain,
) -> None:
    first = await domain.create(NewSession("ada"))
    second = await domain.refresh(first.refresh_token)
    third = await domain.refresh(second.refresh_token)

    await refuses(domain.refresh(first.refresh_token))

    await refuses(domain.validate(third.token, []))
    assert (
        await domain.get(first.session.data.session_id)
    ).revoke_reason is RevokeReason.REFRESH_TOKEN_REUSED


async def test_reuse_is_recognised_for_the_last_spent_tokens_only(domain: SessionDomain) -> None:
    tokens = [await domain.create(NewSession("ada"))]
    for _ in range(MAX_SPENT_REFRESH_DIGESTS + 2):
        tokens.append(await domain.refresh(tokens[-1].refresh_token))

    await refuses(domain.refresh(tokens[0].refresh_token))  # forgotten: just not valid

    await domain.validate(tokens[-1].token, [])
    await refuses(domain.refresh(tokens[1].refresh_token))  # remembered: reuse
    await refuses(domain.validate(tokens[-1].token, []))


async def test_a_guessed_refresh_token_revokes_nothing(domain: SessionDomain, clock: Clock) -> None:
    """Only the real spent secret proves reuse: a made-up token naming the session (its id is not secret)
    must not let anyone log its user out."""
    created = await domain.create(NewSession("ada"))
    second = await domain.refresh(created.refresh_token)
    refreshed = await domain.refresh(second.refresh_token)  # a previous and an older spent token now
    clock.advance(GRACE)
    forged = REFRESH_TOKEN.issue(created.session.data.session_id, secrets.token_bytes(32))

    await refuses(domain.refresh(forged))

    await domain.validate(refreshed.token, [])


async def test_a_refresh_of_a_revoked_session_writes_nothing(
    domain: SessionDomain, clock: Clock, store: Store
) -> None:
    created = await domain.create(NewSession("ada"))
    await domain.revoke_user("ada")
    head = await store.head_cursor()

    await refuses(domain.refresh(created.refresh_token))

    assert await store.head_cursor() == head
