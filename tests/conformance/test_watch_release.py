"""Conformance: a watch whose consumer cancels it ends, wherever the cancellation lands.

A server stream's follower is a store watch stepped in a task of its own (microstate.server.streams); when the
stream's client goes away, the step is cancelled. A watch that outlived that cancellation, because a driver
swallowed it, would follow the store (polling it, holding a connection) for as long as the process lives.
"""

from __future__ import annotations

import asyncio

import pytest

from microstate.server.store import Store
from tests.conformance.waiting import DEADLINE, watching

CANCEL_POINTS = 12
"""Event-loop turns after the wake-up at which the step is cancelled: sending its read, reading, waiting..."""


@pytest.mark.parametrize("turns", range(CANCEL_POINTS))
async def test_a_watch_cancelled_while_it_reads_the_log_ends(store: Store, turns: int) -> None:
    async with watching(store, "mine/", after=await store.head_cursor()) as changes:
        step = asyncio.ensure_future(anext(changes))
        await store.put("other/k", b"v")  # wakes the watch: it reads the log and finds nothing of its own
        for _ in range(turns):
            await asyncio.sleep(0)  # one turn of the event loop, to move the cancellation along the read
        step.cancel()

        done, _ = await asyncio.wait({step}, timeout=DEADLINE)
        assert step in done, f"the watch still ran {DEADLINE}s after it was cancelled"
        assert step.cancelled()
        with pytest.raises(StopAsyncIteration):  # the cancellation ended the watch for good
            await anext(changes)
