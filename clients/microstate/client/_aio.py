"""The async half of every client: performs, on a grpc.aio channel, the calls `ClientCore` plans.

A slice's async client inherits the slice's operations (`_operations.py`); creating the client class binds
each with `unary` or `iterator` here, keeping the plan's signature and docstring, so both twins share one
definition of every public method.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import grpc

from microstate.client import _connection, _operations
from microstate.client._base import ClientBase, raise_typed
from microstate.client._channel import open_aio_channel
from microstate.client._options import ClientOptions
from microstate.client._plans import Answered, Exchange, Iteration, Pages, Plan, Split, Stream, signed_like

log = logging.getLogger("microstate.client")

P = ParamSpec("P")
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")


class AsyncClient(ClientBase):
    """Base of the async clients: one channel, one `ClientCore`; an async context manager."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _operations.bind(cls, unary, iterator)

    def __init__(self, target: str | None = None, *, options: ClientOptions | None = None) -> None:
        super().__init__(target, options=options)
        # A grpc.aio channel belongs to the event loop it was created on, so it is opened on first use:
        # a client built at import time (outside any loop) still works under asyncio.run().
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._closed = False
        self._followers: dict[str, asyncio.Task[None]] = {}

    def _connect(self) -> Any:
        if self._closed:
            raise RuntimeError("the client is closed")
        arguments = self._core.channel_arguments()
        self._channel = open_aio_channel(self._core.target, self._core.options, arguments)
        self._stub = self._stub_class(self._channel)
        return self._stub

    def _keep_following(self, feed: str, on_failure: Callable[[], None]) -> None:
        if feed not in self._followers and not self._closed:
            follow, name = self._follow(feed, on_failure), f"microstate-{feed.strip('_')}"
            self._followers[feed] = asyncio.get_running_loop().create_task(follow, name=name)

    async def _follow(self, feed: str, on_failure: Callable[[], None]) -> None:
        while True:
            try:
                async for _ in getattr(self, feed)():
                    pass
            except Exception:  # failed for good (e.g. RESUME_TOKEN_EXPIRED): drop the cache, start again
                log.warning("%s of %s failed; its cache dropped", feed, self.target, exc_info=True)
            on_failure()
            await asyncio.sleep(self._core.options.retry.max_backoff)

    async def close(self) -> None:
        """Stop the background watches, close the channel and write the snapshot file; safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        followers, self._followers = list(self._followers.values()), {}
        for follower in followers:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        if self._channel is not None:
            await self._channel.close()
        await asyncio.to_thread(self._core.close)  # disk I/O stays off the event loop

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, plan: Plan[O]) -> O:
        if isinstance(plan, Answered):
            return plan.value
        rpc = getattr(self._stub or self._connect(), plan.method)
        try:
            timeout = await self._connected(plan.timeout)
            response = await rpc(plan.request, timeout=timeout, metadata=self._core.authorized(plan.metadata))
        except grpc.RpcError as err:
            outcome = plan.on_error(err)
        else:
            return plan.on_response(response)
        if isinstance(outcome, Split):  # asked for again in parts, outside the except block
            return outcome.combine([await self._call(part()) for part in outcome.parts])
        return outcome

    async def _connected(self, seconds: float | None) -> float | None:
        """What is left of the call's `seconds` once the channel is connected; raises a grpc error for the
        call's on_error when it cannot be (see _connection.py)."""
        assert self._channel is not None
        state = self._channel.get_state(try_to_connect=True)
        if state is _connection.READY:
            return seconds
        gate = _connection.Gate(self._core.target, seconds)
        while state in _connection.PENDING:
            try:
                await asyncio.wait_for(self._channel.wait_for_state_change(state), gate.left())
            except TimeoutError:
                raise gate.timed_out() from None
            state = self._channel.get_state(try_to_connect=True)
        if state is _connection.NOT_CONNECTED:
            raise gate.not_connected()
        return gate.left()

    async def _walk(self, pages: Pages[Any]) -> AsyncGenerator[Any, None]:
        page_token = ""
        while True:
            page = await self._call(pages.page(page_token))
            for item in page.items:
                yield item
            if not (page_token := page.next_page_token):
                return

    async def _exchange(self, exchange: Exchange[Any]) -> AsyncGenerator[Any, None]:
        rpc = getattr(self._stub or self._connect(), exchange.method)
        call = rpc(
            exchange.requests, timeout=exchange.timeout, metadata=self._core.authorized(exchange.metadata)
        )
        try:
            async for response in call:
                yield exchange.on_item(response)
        except grpc.RpcError as err:
            raise_typed(err)
        finally:
            call.cancel()

    async def _stream(self, stream: Stream[Any]) -> AsyncGenerator[Any, None]:
        rpc, cursor = getattr(self._stub or self._connect(), stream.method), stream.cursor
        while True:
            call = rpc(
                stream.request_for(cursor.resume_token),
                timeout=cursor.remaining(),
                metadata=self._core.authorized(stream.metadata),
            )
            error: grpc.RpcError | None = None
            try:
                if cursor.listener is not None:
                    await call.initial_metadata()  # the headers, or the end of a call refused at once
                    if not call.done():  # (see WatchCursor.opened)
                        cursor.opened()
                async for event in call:
                    yield cursor.seen(event)
            except grpc.RpcError as err:
                error = err
            finally:
                call.cancel()
            await asyncio.sleep(cursor.reconnect_delay(error))  # a backoff, not synchronisation


def unary(
    plan: Callable[Concatenate[Any, P], Plan[O]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, O]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> O:
        planned = plan(self, *args, **kwargs)
        if isinstance(planned, Answered):  # answered from memory (a snapshot hit): no second coroutine
            return planned.value
        return await self._call(planned)

    signed_like(method, plan)
    return method


def iterator(
    plan: Callable[Concatenate[Any, P], Iteration[T]],
) -> Callable[Concatenate[AsyncClient, P], AsyncGenerator[T, None]]:
    """Bind a plan that walks pages, follows a stream or exchanges messages; `aclose()` the generator to
    stop early."""

    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[T, None]:
        planned = plan(self, *args, **kwargs)
        if isinstance(planned, Pages):
            return self._walk(planned)
        return self._stream(planned) if isinstance(planned, Stream) else self._exchange(planned)

    signed_like(method, plan)
    return method
