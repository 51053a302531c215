"""Revocations on every backend: revoking all of a user's sessions is one store write whatever their
number, and the revocation watch reports each revocation once, in order, resumably."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from microstate.server.errors import InvalidArgument
from microstate.server.kit.access import Unauthenticated
from microstate.server.session.domain import (
    CHECKPOINT_EVERY,
    NewSession,
    Revocation,
    RevocationType,
    SessionDomain,
)
from microstate.server.session.model import RevokeReason
from microstate.server.session.rules import REFRESH_GRACE_NS
from tests.session.conftest import SECOND, Clock, CountingStore

SESSIONS = 200


@pytest.mark.parametrize("spare", [False, True])
async def test_revoking_every_session_of_a_user_is_one_write(
    domain: SessionDomain, store_calls: CountingStore, spare: bool
) -> None:
    sessions = await asyncio.gather(*(domain.create(NewSession("ada")) for _ in range(SESSIONS)))
    spared = sessions[0].session.data.session_id if spare else ""
    store_calls.reset()

    await domain.revoke_user("ada", spared)

    assert store_calls.writes == 1, store_calls.calls
    for issued in sessions[1:]:
        with pytest.raises(Unauthenticated):
            await domain.validate(issued.token, [])
    assert (await domain.get(sessions[0].session.data.session_id)).active is spare


async def take(events: AsyncGenerator[Revocation, None], count: int) -> list[Revocation]:
    return [await asyncio.wait_for(anext(events), 10) for _ in range(count)]


async def test_the_watch_reports_each_revocation_in_order(domain: SessionDomain, clock: Clock) -> None:
    one, reused, *others = [await domain.create(NewSession("ada")) for _ in range(4)]
    start = await domain.watch_start("")
    events = domain.watch(start)
    try:
        await domain.revoke(one.session.data.session_id)
        await domain.revoke(one.session.data.session_id)  # nothing new: no event
        await domain.refresh(reused.refresh_token)
        clock.advance(REFRESH_GRACE_NS / SECOND)
        with pytest.raises(Unauthenticated):
            await domain.refresh(reused.refresh_token)
        revocation = await domain.revoke_user("ada", others[0].session.data.session_id)

        seen = await take(events, 3)
    finally:
        await events.aclose()

    assert [(e.type, e.session_id, e.revoke_reason) for e in seen] == [
        (RevocationType.SESSION, one.session.data.session_id, RevokeReason.REVOKED),
        (RevocationType.SESSION, reused.session.data.session_id, RevokeReason.REFRESH_TOKEN_REUSED),
        (RevocationType.USER, "", RevokeReason.UNSPECIFIED),
    ]
    assert {e.user_id for e in seen} == {"ada"}
    assert (seen[2].revoke_time_ns, seen[2].except_session_id) == (
        revocation.revoke_time_ns,
        others[0].session.data.session_id,
    )

    resumed = domain.watch(seen[0].resume_token)  # continue after the first: no gap, no duplicate
    try:
        assert [e.resume_token for e in await take(resumed, 2)] == [e.resume_token for e in seen[1:]]
    finally:
        await resumed.aclose()


async def test_the_watch_checkpoints_while_nothing_is_revoked(domain: SessionDomain) -> None:
    start = await domain.watch_start("")
    events = domain.watch(start)
    try:
        # Each create is two changes (index entry, session), neither revokes anything.
        await asyncio.gather(*(domain.create(NewSession("ada")) for _ in range(CHECKPOINT_EVERY // 2)))
        checkpoint = (await take(events, 1))[0]
    finally:
        await events.aclose()

    assert checkpoint.type is RevocationType.CHECKPOINT and checkpoint.resume_token


async def test_a_bad_resume_token_is_refused(domain: SessionDomain) -> None:
    with pytest.raises(InvalidArgument):
        await anext(domain.watch("not a cursor"))
