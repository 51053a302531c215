"""Conformance: trim drops the oldest entries by commit time; cursors from before the cut are expired."""

from __future__ import annotations

import time
from contextlib import aclosing

import pytest

from microstate.server.store.log import Appended, CursorExpired, LogStore
from microstate.server.store.log._shared import TRIM_BATCH
from tests.conformance.waiting import take, wait_until
from tests.conformance_log.support import read_all


async def append_later(log: LogStore, entries: list[bytes], than: Appended) -> Appended:
    """Append once the clock has moved past `than`'s commit time, so the two are trimmed apart.

    The stores here run on this host, so their clock is this host's clock (to well under a millisecond)."""

    async def the_clock_moved() -> bool:
        return time.time() > than.commit_time + 0.005

    await wait_until(the_clock_moved, what="the clock moves past the previous append")
    appended = await log.append(entries)
    assert appended.commit_time > than.commit_time
    return appended


async def test_trim_drops_the_entries_committed_before_the_time(log: LogStore) -> None:
    old = await log.append([b"old-1", b"old-2", b"old-3"])
    new = await append_later(log, [b"new-1", b"new-2"], than=old)

    dropped = await log.trim(new.commit_time)

    assert dropped == 3
    assert [e.data for e in await read_all(log)] == [b"new-1", b"new-2"]
    assert await log.trim(new.commit_time) == 0, "a second trim to the same time dropped more"
    assert await log.head() == new.cursor
    assert (await log.append([b"next"])).positions == range(6, 7), "positions must never be reused"


async def test_cursors_from_before_the_cut_are_expired_and_the_cut_itself_is_not(log: LogStore) -> None:
    old = await log.append([b"old-1", b"old-2"])
    new = await append_later(log, [b"new"], than=old)
    await log.trim(new.commit_time)

    for expired in ("0", "1"):
        with pytest.raises(CursorExpired):
            await log.read(expired)
        with pytest.raises(CursorExpired):
            async with aclosing(log.follow(expired)) as entries:
                await take(entries, 1)
    assert [e.data for e in (await log.read(old.cursor)).entries] == [b"new"]
    async with aclosing(log.follow(old.cursor)) as entries:
        assert [e.data for e in await take(entries, 1)] == [b"new"]


async def test_trimming_everything_keeps_the_head_and_reads_start_after_it(log: LogStore) -> None:
    appended = await log.append([b"a", b"b"])

    assert await log.trim(appended.commit_time + 60) == 2

    page = await log.read()
    assert (page.entries, page.cursor) == ([], "2")
    assert await log.head() == "2"
    async with aclosing(log.follow()) as entries:
        later = await log.append([b"c"])
        (entry,) = await take(entries, 1)
    assert entry.position == later.positions[0] == 3


async def test_a_trim_that_overtakes_a_follower_behind_it_expires_the_follower(log: LogStore) -> None:
    appended = await log.append([str(i).encode() for i in range(600)])
    async with aclosing(log.follow()) as entries:
        await take(entries, 1)
        await log.trim(appended.commit_time + 60)
        await log.append([b"after the trim"])
        with pytest.raises(CursorExpired):
            await take(entries, 600)


async def test_trim_never_drops_an_entry_it_does_not_reach(log: LogStore) -> None:
    old = await log.append([b"old"])
    new = await append_later(log, [b"new"], than=old)

    assert await log.trim(old.commit_time) == 0, "an entry committed exactly at the cut-off was dropped"
    assert await log.trim(new.commit_time) == 1


@pytest.mark.slow
async def test_a_trim_larger_than_one_step_drops_everything_it_should(log: LogStore) -> None:
    total = TRIM_BATCH * 2 + 500
    for start in range(0, total, 5_000):
        last = await log.append([b"x"] * min(5_000, total - start))
    kept = await append_later(log, [b"kept"], than=last)

    assert await log.trim(kept.commit_time) == total
    assert [e.data for e in await read_all(log)] == [b"kept"]
