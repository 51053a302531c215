"""gathered (microstate.server.streams): items arrive in lists of what came while the consumer worked, in
order, bounded, with the source's error after the items before it, and no task left behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from microstate.server.streams import gathered


async def numbers(count: int, *, then: BaseException | None = None) -> AsyncIterator[int]:
    for number in range(count):
        yield number
        await asyncio.sleep(0)  # let the consumer run between items
    if then is not None:
        raise then


async def test_items_come_in_order_in_lists_of_at_most_most() -> None:
    received: list[list[int]] = []
    async for batch in gathered(numbers(50), 4):
        received.append(batch)
        for _ in range(10):  # a busy consumer: items pile up meanwhile
            await asyncio.sleep(0)
    assert [n for batch in received for n in batch] == list(range(50))
    assert all(1 <= len(batch) <= 4 for batch in received)
    assert max(len(batch) for batch in received) == 4, "what came meanwhile is gathered"


async def test_a_quick_consumer_gets_items_one_by_one() -> None:
    received = [batch async for batch in gathered(numbers(10), 4)]
    assert [n for batch in received for n in batch] == list(range(10))


@pytest.mark.parametrize("error", [ValueError("bad chunk"), asyncio.CancelledError()])
async def test_an_error_of_the_source_comes_after_the_items_before_it(error: BaseException) -> None:
    received: list[int] = []
    with pytest.raises(type(error)):
        async for batch in gathered(numbers(7, then=error), 3):
            received.extend(batch)
    assert received == list(range(7))


async def test_at_most_most_items_wait_for_a_stalled_consumer() -> None:
    pulled = 0

    async def counted() -> AsyncIterator[int]:
        nonlocal pulled
        for number in range(100):
            pulled += 1
            yield number

    async with contextlib.aclosing(gathered(counted(), 4)) as batches:
        first = await anext(batches)
        for _ in range(50):  # the consumer works on `first` while the receiver runs
            await asyncio.sleep(0)
        assert pulled - len(first) <= 4 + 1, "beyond the consumer's list: a full queue and one item in hand"


async def test_closing_it_early_ends_the_receiving_task() -> None:
    ended = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            while True:
                yield 1
        finally:
            ended.set()

    tasks_before = asyncio.all_tasks()
    async with contextlib.aclosing(gathered(endless(), 2)) as batches:
        await anext(batches)
    assert ended.is_set(), "the source was closed with the receiving task"
    assert asyncio.all_tasks() == tasks_before
