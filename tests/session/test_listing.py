"""ListUserSessions on every backend: active sessions only, AIP-158 pages, and a per-user index that keeps no
member of an ended session once it has been read (where Spring Session's per-user index leaks)."""

from __future__ import annotations

import asyncio

import pytest

from microstate.server.errors import InvalidArgument
from microstate.server.session.domain import NewSession, SessionDomain, SessionView
from microstate.server.session.model import index_prefix
from microstate.server.session.rules import MAX_LISTING_SCAN
from microstate.server.store import Store
from tests.session.conftest import SECOND, Clock


async def list_all(domain: SessionDomain, user_id: str, page_size: int = 0) -> tuple[list[SessionView], int]:
    """Every page; the sessions and the number of calls it took."""
    found: list[SessionView] = []
    token, calls = "", 0
    while True:
        page, token = await domain.list_user(user_id, page_size, token)
        found += page
        calls += 1
        if not token:
            return found, calls


async def index_members(store: Store, user_id: str) -> list[str]:
    keys: list[str] = []
    after = None
    while True:
        page = await store.list(index_prefix(user_id), after=after, limit=1000)
        keys += [record.key for record in page.records]
        after = page.next_after
        if after is None:
            return keys


async def test_only_active_sessions_are_listed_in_pages(domain: SessionDomain, clock: Clock) -> None:
    sessions = [await domain.create(NewSession("ada", idle_ttl_ns=60 * SECOND)) for _ in range(7)]
    await domain.create(NewSession("adam"))  # a user id with "ada" as its prefix
    await domain.revoke(sessions[0].session.data.session_id)
    short = await domain.create(NewSession("ada", idle_ttl_ns=SECOND))
    clock.advance(1)

    found, calls = await list_all(domain, "ada", page_size=3)

    ids = [view.data.session_id for view in found]
    assert ids == sorted(issued.session.data.session_id for issued in sessions[1:])
    assert calls >= 2
    assert short.session.data.session_id not in ids
    assert all(view.active for view in found)


async def test_listing_removes_the_index_entries_of_ended_sessions(
    domain: SessionDomain, clock: Clock, store: Store
) -> None:
    kept = await domain.create(NewSession("ada", idle_ttl_ns=3600 * SECOND))
    ended = [await domain.create(NewSession("ada", idle_ttl_ns=SECOND)) for _ in range(4)]
    await domain.revoke(ended[0].session.data.session_id)
    clock.advance(1)
    await domain.revoke_user("ada", kept.session.data.session_id)
    clock.advance(0.001)
    after_mark = await domain.create(NewSession("ada"))
    assert len(await index_members(store, "ada")) == 6

    await list_all(domain, "ada")

    assert sorted(await index_members(store, "ada")) == sorted(
        index_prefix("ada") + issued.session.data.session_id for issued in (kept, after_mark)
    )


async def create_many(domain: SessionDomain, user_id: str, count: int, idle_ttl_ns: int) -> None:
    batch = 200
    for start in range(0, count, batch):
        await asyncio.gather(
            *(
                domain.create(NewSession(user_id, idle_ttl_ns=idle_ttl_ns))
                for _ in range(min(batch, count - start))
            )
        )


async def assert_no_expired_member_once_read(
    domain: SessionDomain, clock: Clock, store: Store, expired: int
) -> None:
    await create_many(domain, "ada", expired, idle_ttl_ns=SECOND)
    live = await domain.create(NewSession("ada", idle_ttl_ns=3600 * SECOND))
    clock.advance(2)

    found, calls = await list_all(domain, "ada", page_size=10)

    assert [view.data.session_id for view in found] == [live.session.data.session_id]
    assert calls <= expired // MAX_LISTING_SCAN + 2  # no call looks at more than MAX_LISTING_SCAN entries
    assert await index_members(store, "ada") == [index_prefix("ada") + live.session.data.session_id]


async def test_an_index_with_many_expired_members_holds_none_once_read(
    domain: SessionDomain, clock: Clock, store: Store
) -> None:
    await assert_no_expired_member_once_read(domain, clock, store, expired=150)


@pytest.mark.slow
@pytest.mark.timeout(900)  # 100,000 creates: past the default 180 s on a slow 2-core VM
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_index_with_100000_expired_members_holds_none_once_read(
    domain: SessionDomain, clock: Clock, store: Store
) -> None:
    await assert_no_expired_member_once_read(domain, clock, store, expired=100_000)


async def test_a_page_token_belongs_to_its_user(domain: SessionDomain) -> None:
    for _ in range(3):
        await domain.create(NewSession("ada"))
    _, token = await domain.list_user("ada", 1, "")

    with pytest.raises(InvalidArgument) as caught:
        await domain.list_user("bob", 1, token)

    assert caught.value.reason == "INVALID_PAGE_TOKEN"
