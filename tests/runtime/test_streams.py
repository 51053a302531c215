"""until_stopping (microstate.server.streams) ends its source, however the stream ends.

The sources here are small async generators that record how they ended: what is under test is the helper,
which must close any source (a store watch, a future slice's own) before the stream's handler returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

import pytest

from microstate.server.streams import RECANCEL_INTERVAL, until_stopping

DEADLINE = 5.0 + RECANCEL_INTERVAL
STOPPING = pytest.mark.parametrize("stopping", [asyncio.Event, lambda: None], ids=["stopping", "no-stopping"])
"""until_stopping with a stopping event (as the runtime passes) and without one."""


class Source:
    """An endless source that yields one item, then waits; it records whether it is running or ended."""

    def __init__(self, *, swallow_cancellations: int = 0) -> None:
        self.waiting = asyncio.Event()
        self.ended = False
        self.swallow = swallow_cancellations
        """How many more cancellations to swallow (a test sets 0 when it ends, so teardown can end it)."""
        self.items = self._items()

    async def _items(self) -> AsyncGenerator[int, None]:
        try:
            yield 1
            while True:
                self.waiting.set()
                try:
                    await asyncio.Event().wait()  # never set: only a cancellation moves on
                except asyncio.CancelledError:
                    if self.swallow == 0:
                        raise
                    self.swallow -= 1  # as a driver that loses a cancellation does (see RECANCEL_INTERVAL)
        finally:
            self.ended = True


async def consume(source: Source, stopping: asyncio.Event | None) -> list[int]:
    seen: list[int] = []
    async for item in until_stopping(source.items, stopping):
        seen.append(item)
    return seen


@STOPPING
@pytest.mark.parametrize("swallowed", [0, 1], ids=["", "swallowed"])
async def test_cancelling_the_consumer_ends_the_source_before_it_returns(
    stopping: Callable[[], asyncio.Event | None], swallowed: int
) -> None:
    """gRPC ends a stream whose client cancelled it, or whose deadline passed, by cancelling its handler."""
    source = Source(swallow_cancellations=swallowed)
    handler = asyncio.ensure_future(consume(source, stopping()))
    try:
        await asyncio.wait_for(source.waiting.wait(), DEADLINE)
        handler.cancel()
        done, _ = await asyncio.wait({handler}, timeout=DEADLINE)
        assert handler in done, "the stream outlived the cancellation"
        assert handler.cancelled(), handler.exception()  # not RuntimeError: aclose() of a running generator
        assert source.ended
    finally:
        source.swallow = 0


async def test_a_handler_cancelled_before_its_stream_starts_does_not_follow_the_source() -> None:
    """The handler reads where its stream starts before it streams; a driver call there may lose the
    cancellation of a client that went away meanwhile. The stream must then not start following."""
    source = Source()
    preparing = asyncio.Event()

    async def handler() -> list[int]:
        preparing.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a driver that loses a cancellation does
            await asyncio.Event().wait()
        return await consume(source, asyncio.Event())

    task = asyncio.ensure_future(handler())
    await asyncio.wait_for(preparing.wait(), DEADLINE)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=DEADLINE)
    assert task in done, "the stream followed its source after its handler was cancelled"
    assert task.cancelled()
    assert not source.waiting.is_set()


async def test_setting_stopping_ends_the_stream_and_its_source() -> None:
    source = Source()
    stopping = asyncio.Event()
    handler = asyncio.ensure_future(consume(source, stopping))
    async with asyncio.timeout(DEADLINE):
        await source.waiting.wait()
        stopping.set()
        assert await handler == [1]
    assert source.ended


@STOPPING
async def test_closing_the_stream_between_items_ends_the_source_at_once(
    stopping: Callable[[], asyncio.Event | None],
) -> None:
    """gRPC may drop a handler suspended at a yield; closing it must close its source too, not leave that
    to the garbage collector."""
    source = Source()
    stream = until_stopping(source.items, stopping())
    assert await anext(stream) == 1
    await stream.aclose()
    assert source.ended
