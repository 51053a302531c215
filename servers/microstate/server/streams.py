"""Server-streaming helpers shared by every microstate."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar, overload

from google.protobuf.message import Message

from microstate.server.cancellation import end_if_cancelled
from microstate.server.errors import InvalidArgument
from microstate.server.wellknown import duration_ns

T = TypeVar("T")

log = logging.getLogger(__name__)

RECANCEL_INTERVAL: Final = 1.0
"""Seconds a stream's source gets to end after a cancellation before it is cancelled again: a driver may
swallow one (Python 3.11's asyncio.wait_for does if what it waits for completes just then, and redis-py and
PyMongo send every command through it), and a source left running would follow the store for good."""


MIN_HEARTBEAT_NS: Final = 1_000_000_000
MAX_HEARTBEAT_NS: Final = 3600 * 1_000_000_000


def heartbeat_interval(request: Message, field: str = "heartbeat_interval") -> float | None:
    """The heartbeat interval a watch request asks for, in seconds (1 s to 1 h); None: it asks for none."""
    if not request.HasField(field):
        return None
    ns = duration_ns(getattr(request, field), field)
    if not MIN_HEARTBEAT_NS <= ns <= MAX_HEARTBEAT_NS:
        raise InvalidArgument(field, "from 1 second to 1 hour")
    return ns / 1e9


class Idle(enum.Enum):
    """What `until_stopping` yields when its items were silent for `idle` seconds."""

    IDLE = "idle"


IDLE: Final = Idle.IDLE


@overload
def until_stopping(
    items: AsyncGenerator[T, None], stopping: asyncio.Event | None, *, idle: None = None
) -> AsyncGenerator[T, None]: ...


@overload
def until_stopping(
    items: AsyncGenerator[T, None], stopping: asyncio.Event | None, *, idle: float | None
) -> AsyncGenerator[T | Idle, None]: ...


async def until_stopping(
    items: AsyncGenerator[T, None], stopping: asyncio.Event | None, *, idle: float | None = None
) -> AsyncGenerator[T | Idle, None]:
    """Yield from `items` until they end or `stopping` is set, then close them; with `idle`, also yield
    IDLE whenever `items` were silent that many seconds (a heartbeat, so a client can tell a quiet stream
    from a dead one).

    Watch streams never end by themselves; ending them when the server stops lets `server.stop(grace)` finish
    without waiting out the grace period, and clients resume (from their last token) on another server.

    However the stream ends (its items run out, the server stops, the client cancels or its deadline passes,
    which gRPC delivers as a cancellation of the handler, or the consumer closes this generator), `items` has
    ended before this returns: its polling, connections and tasks are released with the stream.
    """
    # Each step of `items` runs in a task of its own, so that `stopping` can interrupt it (and a silence be
    # noticed without cancelling it); a step must have ended before `items` can be closed (closing a running
    # generator raises RuntimeError and closes nothing).
    stop: asyncio.Future[Any] = asyncio.ensure_future((stopping or asyncio.Event()).wait())
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            # The handler's own calls (reading where the stream starts) may have lost a cancellation too.
            end_if_cancelled()
            if step is None:
                step = asyncio.ensure_future(anext(items))
            await asyncio.wait({step, stop}, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                if stop.done():
                    return
                yield IDLE
                continue
            done, step = step, None
            try:
                item = done.result()
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


@dataclass(frozen=True)
class _Ended:
    error: BaseException | None


async def gathered(items: AsyncIterator[T], most: int) -> AsyncGenerator[list[T], None]:
    """Yield `items` in lists, each holding what arrived while the consumer was busy with the one before
    (at least one item, at most `most`). A consumer whose work has a fixed cost per call (a hand-off to a
    worker thread, a lock, a transaction) pays it once per list instead of once per item, and receiving the
    next items overlaps with that work. At most `most` items wait, plus the one being received, so memory
    stays flat. An error of `items` is raised after the items that came before it. Close it (aclosing) when
    leaving it early: that ends the task that receives.
    """
    waiting: asyncio.Queue[T | _Ended] = asyncio.Queue(most)
    closing = False

    async def receive() -> None:
        try:
            async for item in items:
                await waiting.put(item)
            ended = _Ended(None)
        except asyncio.CancelledError as exc:
            if closing:
                raise
            ended = _Ended(exc)  # a CancelledError of `items` itself: the consumer raises it
        except Exception as exc:
            ended = _Ended(exc)
        finally:
            aclose = getattr(items, "aclose", None)
            if closing and aclose is not None:
                await aclose()
        await waiting.put(ended)

    receiving = asyncio.ensure_future(receive())
    try:
        while True:
            batch = [await waiting.get()]
            while len(batch) < most and not waiting.empty():
                batch.append(waiting.get_nowait())
            ended = batch[-1] if isinstance(batch[-1], _Ended) else None
            if ended is not None:
                batch.pop()
            if batch:
                yield batch  # type: ignore[misc]  # every _Ended is last, and popped
            if ended is not None:
                if ended.error is not None:
                    raise ended.error
                return
    finally:
        closing = True
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
