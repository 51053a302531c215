"""Server-streaming helpers shared by every microstate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Final, TypeVar

from microstate.server.cancellation import end_if_cancelled

T = TypeVar("T")

log = logging.getLogger(__name__)

RECANCEL_INTERVAL: Final = 1.0
"""Seconds a stream's source gets to end after a cancellation before it is cancelled again: a driver may
swallow one (Python 3.11's asyncio.wait_for does if what it waits for completes just then, and redis-py and
PyMongo send every command through it), and a source left running would follow the store for good."""


async def until_stopping(
    items: AsyncGenerator[T, None], stopping: asyncio.Event | None
) -> AsyncGenerator[T, None]:
    """Yield from `items` until they end or `stopping` is set, then close them.

    Watch streams never end by themselves; ending them when the server stops lets `server.stop(grace)` finish
    without waiting out the grace period, and clients resume (from their last token) on another server.

    However the stream ends (its items run out, the server stops, the client cancels or its deadline passes,
    which gRPC delivers as a cancellation of the handler, or the consumer closes this generator), `items` has
    ended before this returns: its polling, connections and tasks are released with the stream.
    """
    # Each step of `items` runs in a task of its own, so that `stopping` can interrupt it; a step must have
    # ended before `items` can be closed (closing a running generator raises RuntimeError and closes nothing).
    stop = asyncio.ensure_future((stopping or asyncio.Event()).wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            # The handler's own calls (reading where the stream starts) may have lost a cancellation too.
            end_if_cancelled()
            step = asyncio.ensure_future(anext(items))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop.cancel()
        if step is not None:
            await _end(step)
        await items.aclose()


async def _end(step: asyncio.Future[T]) -> None:
    """Cancel `step` until it has ended (see RECANCEL_INTERVAL); what it ended with no longer matters.

    A cancellation that propagates out of a generator finishes it, so `items` ends with the step. If this
    task is cancelled (again) while it waits, the step, cancelled already, still ends on its own.
    """
    while not step.done():
        step.cancel()
        await asyncio.wait({step}, timeout=RECANCEL_INTERVAL)
        if not step.done():
            log.debug("a stream's source ignored a cancellation; cancelling it again")
    error = None if step.cancelled() else step.exception()
    if error is not None and not isinstance(error, StopAsyncIteration):
        log.warning("a stream's source failed while it was being closed", exc_info=error)
