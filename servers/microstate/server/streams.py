"""Server-streaming helpers shared by every microstate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def until_stopping(items: AsyncGenerator[T, None], stopping: asyncio.Event | None) -> AsyncIterator[T]:
    """Yield from `items` until they end or `stopping` is set, then close them.

    Watch streams never end by themselves; ending them when the server stops lets `server.stop(grace)` finish
    without waiting out the grace period, and clients resume (from their last token) on another server.
    """
    if stopping is None:
        async for item in items:
            yield item
        return
    stop = asyncio.ensure_future(stopping.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(items))
            await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop.cancel()
        await items.aclose()
