"""Conformance: watch delivers every change once, in commit order, and resumes from a cursor without gaps."""

from __future__ import annotations

import pytest

from microstate.server.store import ChangeKind, CursorExpired, InvalidCursor, Store
from microstate.server.store.base import cursor_of, revision_of
from tests.conformance.conftest import StoreFactory
from tests.conformance.waiting import first_change, take, watching


async def test_changes_arrive_in_commit_order_with_their_kinds(store: Store) -> None:
    start = await store.head_cursor()
    created = await store.put("w/a", b"1")
    updated = await store.put("w/a", b"2")
    await store.delete("w/a")
    other = await store.put("w/b", b"1")

    async with watching(store, after=start) as changes:
        seen = await take(changes, 4)

    assert [(c.kind, c.key) for c in seen] == [
        (ChangeKind.CREATED, "w/a"),
        (ChangeKind.UPDATED, "w/a"),
        (ChangeKind.DELETED, "w/a"),
        (ChangeKind.CREATED, "w/b"),
    ]
    assert [c.record for c in seen] == [created, updated, None, other]
    assert len({c.cursor for c in seen}) == 4
    assert all(c.commit_time > 0 for c in seen)


async def test_a_running_watch_sees_writes_made_while_it_waits(store: Store) -> None:
    async with watching(store, after=await store.head_cursor()) as changes:
        await store.put("k", b"1")
        await take(changes, 1)  # the watch is running and has caught up
        written = await store.put("k", b"2")
        (change,) = await take(changes, 1)

    assert change.record == written


async def test_the_prefix_filters_changes(store: Store) -> None:
    start = await store.head_cursor()
    await store.put("other/1", b"x")
    wanted = await store.put("mine/1", b"x")
    await store.put("minefield", b"x")
    await store.delete("other/1")
    last = await store.put("mine/2", b"x")

    async with watching(store, "mine/", after=start) as changes:
        seen = await take(changes, 2)

    assert [c.record for c in seen] == [wanted, last]


async def test_resuming_from_a_cursor_mid_stream_yields_exactly_the_rest(store: Store) -> None:
    start = await store.head_cursor()
    for i in range(10):
        await store.put(f"k{i}", str(i).encode())
    async with watching(store, after=start) as changes:
        first_run = await take(changes, 10)

    resume_from = first_run[3].cursor
    async with watching(store, after=resume_from) as changes:
        resumed = await take(changes, 6)
        sentinel = await store.put("sentinel", b"")
        (after_rest,) = await take(changes, 1)

    assert [(c.key, c.record) for c in resumed] == [(c.key, c.record) for c in first_run[4:]]
    assert after_rest.record == sentinel, "a change was delivered twice, or an unexpected one appeared"


async def test_resuming_from_the_latest_cursor_yields_only_later_changes(store: Store) -> None:
    start = await store.head_cursor()
    first = await store.put("k", b"1")
    change = await first_change(store, after=start)
    newer = await store.put("k", b"2")

    assert change.record == first
    assert (await first_change(store, after=change.cursor)).record == newer


async def test_a_watch_sees_writes_made_through_another_connection(
    store: Store, store_factory: StoreFactory
) -> None:
    writer = await store_factory()

    async with watching(store, after=await store.head_cursor()) as changes:
        written = await writer.put("k", b"v")
        await writer.delete("k")
        seen = await take(changes, 2)

    assert [c.kind for c in seen] == [ChangeKind.CREATED, ChangeKind.DELETED]
    assert seen[0].record == written


@pytest.mark.parametrize(
    ("query", "options"),
    [
        pytest.param("", {"retention": 10}, id="in-code"),
        pytest.param("retention=10", {}, id="in-the-url"),
        pytest.param("retention=10", {"retention": 1_000_000}, id="the-url-wins-over-code"),
    ],
)
async def test_a_cursor_older_than_the_retained_log_is_expired(
    store_factory: StoreFactory, query: str, options: dict[str, int]
) -> None:
    store = await store_factory(query, **options)
    start = await store.head_cursor()
    # Far more than the retention, so backends that trim approximately (Redis MAXLEN ~) have trimmed too.
    for i in range(300):
        await store.put(f"k{i % 7}", b"v")
    recent = await store.head_cursor()
    latest = await store.put("latest", b"v")

    with pytest.raises(CursorExpired):
        await first_change(store, after=start)
    assert (await first_change(store, after=recent)).record == latest


@pytest.mark.parametrize("cursor", ["not-a-cursor", "12abc", "\x00"])
async def test_a_malformed_cursor_is_invalid(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await first_change(store, after=cursor)


async def test_cursors_are_revisions(store: Store) -> None:
    """store.base.cursor_of: a change's cursor, and the head after it, is its revision in decimal; a delete
    has a revision of its own."""
    start = await store.head_cursor()
    written = await store.put("rev/a", b"1")
    assert await store.head_cursor() == cursor_of(written.revision)
    await store.delete("rev/a")
    deleted_at = revision_of(await store.head_cursor())
    assert deleted_at > written.revision
    async with watching(store, after=start) as changes:
        put, delete = await take(changes, 2)
    assert (revision_of(put.cursor), revision_of(delete.cursor)) == (written.revision, deleted_at)
    async with watching(store, after=cursor_of(written.revision)) as changes:
        (again,) = await take(changes, 1)
    assert again.kind is ChangeKind.DELETED
