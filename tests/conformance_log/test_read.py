"""Conformance: reads page through the log after a cursor; bad cursors are told apart from expired ones."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from microstate.server.store.log import InvalidCursor, LogStore
from tests.conformance.waiting import take
from tests.conformance_log.support import read_all


async def test_reads_page_through_the_log_in_order(log: LogStore) -> None:
    for start in range(0, 25, 5):
        await log.append([str(i).encode() for i in range(start, start + 5)])

    pages = []
    after = None
    while True:
        page = await log.read(after, limit=10)
        pages.append(page)
        after = page.cursor
        if not page.more:
            break

    assert [len(p.entries) for p in pages] == [10, 10, 5]
    assert [p.more for p in pages] == [True, True, False]
    assert [e.data for p in pages for e in p.entries] == [str(i).encode() for i in range(25)]
    assert pages[-1].cursor == await log.head() == "25"
    assert [p.cursor for p in pages[:-1]] == [p.entries[-1].cursor for p in pages[:-1]]


async def test_a_read_at_the_head_is_empty_and_keeps_its_cursor(log: LogStore) -> None:
    empty = await log.read()
    assert (empty.entries, empty.cursor, empty.more) == ([], "0", False)

    appended = await log.append([b"v"])
    at_head = await log.read(appended.cursor)

    assert (at_head.entries, at_head.cursor, at_head.more) == ([], appended.cursor, False)


async def test_a_read_after_any_cursor_returns_exactly_the_rest(log: LogStore) -> None:
    await log.append([b"a", b"b", b"c"])
    await log.append([b"d", b"e"])
    entries = await read_all(log)

    for i, entry in enumerate(entries):
        assert await read_all(log, entry.cursor) == entries[i + 1 :]
    assert await read_all(log, "0") == entries


@pytest.mark.parametrize("cursor", ["not-a-cursor", "-1", "01", "1.0", " 1", "\x00", "9" * 20])
async def test_a_malformed_cursor_is_invalid(log: LogStore, cursor: str) -> None:
    await log.append([b"v"])

    with pytest.raises(InvalidCursor):
        await log.read(cursor)
    with pytest.raises(InvalidCursor):
        async with aclosing(log.follow(cursor)) as entries:
            await take(entries, 1)


async def test_a_cursor_ahead_of_the_log_is_invalid(log: LogStore) -> None:
    await log.append([b"v"])

    with pytest.raises(InvalidCursor):
        await log.read("2")
    with pytest.raises(InvalidCursor):
        async with aclosing(log.follow("2")) as entries:
            await take(entries, 1)


async def test_a_limit_below_one_is_refused(log: LogStore) -> None:
    with pytest.raises(ValueError):
        await log.read(limit=0)
