"""The sync half of every client: performs, on a blocking grpc channel, the calls `ClientCore` plans.

Thread-safe: the channel, the snapshot store and the breaker may be shared by many threads. A slice's
sync client inherits the slice's operations (`_operations.py`); creating the client class binds each with
`unary` or `iterator` here, keeping the plan's signature and docstring, so both twins share one definition
of every public method.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import grpc

from microstate.client import _operations
from microstate.client._base import ClientBase, raise_typed
from microstate.client._channel import open_sync_channel
from microstate.client._options import ClientOptions
from microstate.client._plans import Answered, Exchange, Iteration, Pages, Plan, Stream, signed_like

P = ParamSpec("P")
O = TypeVar("O")  # noqa: E741
T = TypeVar("T")


class SyncClient(ClientBase):
    """Base of the sync clients: one channel, one `ClientCore`; a context manager."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _operations.bind(cls, unary, iterator)

    def __init__(self, target: str | None = None, *, options: ClientOptions | None = None) -> None:
        super().__init__(target, options=options)
        self._channel = open_sync_channel(
            self._core.target, self._core.options, self._core.channel_arguments()
        )
        self._stub = self._stub_class(self._channel)
        self._closed = False

    def close(self) -> None:
        """Close the channel and write the snapshot file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._channel.close()
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, plan: Plan[O]) -> O:
        if isinstance(plan, Answered):
            return plan.value
        rpc, request = getattr(self._stub, plan.method), plan.request
        if isinstance(request, Iterable):  # a client stream: blocking gRPC takes an iterator, not a list
            request = iter(request)
        try:
            response = rpc(request, timeout=plan.timeout, metadata=plan.metadata)
        except grpc.RpcError as err:
            return plan.on_error(err)
        return plan.on_response(response)

    def _walk(self, pages: Pages[Any]) -> Generator[Any, None, None]:
        page_token = ""
        while True:
            page = self._call(pages.page(page_token))
            yield from page.items
            if not (page_token := page.next_page_token):
                return

    def _exchange(self, exchange: Exchange[Any]) -> Generator[Any, None, None]:
        rpc = getattr(self._stub, exchange.method)
        call = rpc(iter(exchange.requests), timeout=exchange.timeout, metadata=exchange.metadata)
        try:
            for response in call:
                yield exchange.on_item(response)
        except grpc.RpcError as err:
            raise_typed(err)
        finally:
            call.cancel()

    def _stream(self, stream: Stream[Any]) -> Generator[Any, None, None]:
        rpc, cursor = getattr(self._stub, stream.method), stream.cursor
        while True:
            call = rpc(
                stream.request_for(cursor.resume_token), timeout=cursor.remaining(), metadata=stream.metadata
            )
            error: grpc.RpcError | None = None
            try:
                for event in call:
                    yield cursor.seen(event)
            except grpc.RpcError as err:
                error = err
            finally:
                call.cancel()
            time.sleep(cursor.reconnect_delay(error))  # a backoff, not synchronisation


def unary(
    plan: Callable[Concatenate[Any, P], Plan[O]],
) -> Callable[Concatenate[SyncClient, P], O]:
    def method(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> O:
        return self._call(plan(self, *args, **kwargs))

    signed_like(method, plan)
    return method


def iterator(
    plan: Callable[Concatenate[Any, P], Iteration[T]],
) -> Callable[Concatenate[SyncClient, P], Generator[T, None, None]]:
    """Bind a plan that walks pages, follows a stream or exchanges messages; `close()` the generator to
    stop early."""

    def method(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Generator[T, None, None]:
        planned = plan(self, *args, **kwargs)
        if isinstance(planned, Pages):
            return self._walk(planned)
        return self._stream(planned) if isinstance(planned, Stream) else self._exchange(planned)

    signed_like(method, plan)
    return method
