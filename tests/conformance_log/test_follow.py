"""Conformance: follow yields every entry once, in order, resumes from any cursor, and leaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import aclosing

import pytest

from microstate.server.store.log import LogStore, StoreUnavailable
from tests.conformance.conftest import Backend
from tests.conformance.waiting import DEADLINE, take, wait_until
from tests.conformance_log.conftest import LogFactory
from tests.conformance_log.support import held, parked, read_all


async def test_a_follower_yields_the_log_then_each_new_append(log: LogStore) -> None:
    await log.append([b"a", b"b"])

    async with aclosing(log.follow()) as entries:
        existing = await take(entries, 2)
        later = await log.append([b"c", b"d", b"e"])
        new = await take(entries, 3)

    assert [e.data for e in existing] == [b"a", b"b"]
    assert [(e.position, e.data) for e in new] == list(zip(later.positions, [b"c", b"d", b"e"], strict=True))
    assert all(e.commit_time == later.commit_time for e in new)


async def test_following_from_any_cursor_yields_exactly_the_rest(log: LogStore) -> None:
    for start in range(0, 12, 3):
        await log.append([str(i).encode() for i in range(start, start + 3)])
    everything = await read_all(log)

    for resume_at in (0, 1, 5, 6, 11, 12):
        cursor = everything[resume_at - 1].cursor if resume_at else "0"
        async with aclosing(log.follow(cursor)) as entries:
            rest = await take(entries, len(everything) - resume_at)
            sentinel = await log.append([f"sentinel after {resume_at}".encode()])
            (next_one,) = await take(entries, 1)
        assert rest == everything[resume_at:]
        assert next_one.position == sentinel.positions[0], "an entry was yielded twice, or one was skipped"
        everything.append(next_one)


async def test_a_follower_sees_appends_of_other_connections_in_commit_order(log_factory: LogFactory) -> None:
    follower, writer_a, writer_b = await log_factory(), await log_factory(), await log_factory()

    async with aclosing(follower.follow(await follower.head())) as entries:
        writers = [writer_a, writer_b] * 4
        appends = await asyncio.gather(
            *(w.append([f"{i}-{n}".encode() for n in range(3)]) for i, w in enumerate(writers))
        )
        seen = await take(entries, 24)

    assert [e.position for e in seen] == list(range(1, 25))
    assert sorted(p for a in appends for p in a.positions) == list(range(1, 25))


async def test_a_follower_resumes_after_the_log_is_reopened(log: LogStore, log_factory: LogFactory) -> None:
    await log.append([str(i).encode() for i in range(10)])
    async with aclosing(log.follow()) as entries:
        first = await take(entries, 4)
    await log.close()

    reopened = await log_factory()

    async with aclosing(reopened.follow(first[-1].cursor)) as entries:
        rest = await take(entries, 6)
        sentinel = await reopened.append([b"after the reopen"])
        (next_one,) = await take(entries, 1)
    assert [e.data for e in first + rest] == [str(i).encode() for i in range(10)]
    assert next_one.position == sentinel.positions[0] == 11


async def _abandon(log: LogStore, *, cancel_while_waiting: bool) -> None:
    """Follow, take an entry read while waiting (so the follower has used whatever connection it waits on),
    then leave: close at the yield, or cancel a pending `anext` first (what a gRPC stream ended by its client
    does) and then close."""
    follower = log.follow()
    await take(follower, 1)  # the first read, which checks the cursor
    pending = await parked(follower)
    await log.append([b"wake up"])
    await asyncio.wait_for(pending, DEADLINE)
    if cancel_while_waiting:
        pending = await parked(follower)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
    await follower.aclose()


@pytest.mark.parametrize("cancel_while_waiting", [False, True], ids=["closed", "cancelled-then-closed"])
async def test_a_follower_left_early_releases_its_tasks_and_connections(
    backend: Backend, namespace: str, log: LogStore, cancel_while_waiting: bool
) -> None:
    await log.append([b"v"])
    await log.head()  # the store's own connections are open: they are part of the baseline
    baseline = await held(backend, namespace)

    await _abandon(log, cancel_while_waiting=cancel_while_waiting)

    async def released() -> bool:
        return await held(backend, namespace) == baseline

    await wait_until(released, what=f"the follower's tasks and connections are freed (baseline {baseline})")


async def test_many_abandoned_followers_leave_nothing_behind(
    backend: Backend, namespace: str, log: LogStore
) -> None:
    await log.append([b"v"])
    await log.head()
    baseline = await held(backend, namespace)

    await asyncio.gather(*(_abandon(log, cancel_while_waiting=i % 2 == 1) for i in range(20)))

    async def released() -> bool:
        return await held(backend, namespace) == baseline

    await wait_until(released, what=f"20 followers' tasks and connections are released (baseline {baseline})")
    assert (await log.append([b"still works"])).positions == range(22, 23)


async def test_closing_the_log_ends_its_followers_with_store_unavailable(log: LogStore) -> None:
    await log.append([b"v"])
    follower = log.follow()
    await take(follower, 1)
    pending = await parked(follower)
    assert not pending.done()

    await log.close()

    with pytest.raises(StoreUnavailable):
        async with asyncio.timeout(DEADLINE):
            await pending
    await follower.aclose()
