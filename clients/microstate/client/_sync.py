"""The sync half of every client: performs, on a blocking grpc channel, the calls `ClientCore` plans.

Thread-safe: the channel, the snapshot store and the breaker may be shared by many threads. A slice's
sync client inherits the slice's operations (`_operations.py`); creating the client class binds each with
`unary` or `iterator` here, keeping the plan's signature and docstring, so both twins share one definition
of every public method.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import grpc

from microstate.client import _connection, _operations
from microstate.client._base import ClientBase, raise_typed
from microstate.client._channel import open_sync_channel
from microstate.client._options import ClientOptions
from microstate.client._plans import Answered, Exchange, Iteration, Pages, Plan, Split, Stream, signed_like

log = logging.getLogger("microstate.client")

CONNECT_POLL = 1.0
"""Seconds of one wait for a change of the channel's state; a call without a deadline waits in several."""

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
        self._followers: dict[str, threading.Thread] = {}
        self._followers_lock = threading.Lock()
        self._stopping = threading.Event()

    def _keep_following(self, feed: str, on_failure: Callable[[], None]) -> None:
        if feed in self._followers:
            return
        with self._followers_lock:
            if feed not in self._followers and not self._stopping.is_set():
                name = f"microstate-{feed.strip('_')}"
                follower = threading.Thread(
                    target=self._follow, args=(feed, on_failure), name=name, daemon=True
                )
                self._followers[feed] = follower
                follower.start()

    def _follow(self, feed: str, on_failure: Callable[[], None]) -> None:
        while not self._stopping.is_set():
            try:
                for _ in getattr(self, feed)():
                    if self._stopping.is_set():
                        return
            except Exception:  # failed for good, or close() closed the channel under it
                if self._stopping.is_set():
                    return
                log.warning("%s of %s failed; its cache dropped", feed, self.target, exc_info=True)
            on_failure()
            self._stopping.wait(self._core.options.retry.max_backoff)

    def close(self) -> None:
        """Stop the background watches, close the channel and write the snapshot file; safe to call
        twice."""
        with self._followers_lock:
            self._stopping.set()
        if self._closed:
            return
        self._closed = True
        self._channel.close()  # which ends the followers' calls
        for follower in self._followers.values():
            if follower is not threading.current_thread():
                follower.join(timeout=self._core.options.retry.max_backoff + 1.0)
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
            timeout = self._connected(plan.timeout)
            response = rpc(request, timeout=timeout, metadata=self._core.authorized(plan.metadata))
        except grpc.RpcError as err:
            outcome = plan.on_error(err)
        else:
            return plan.on_response(response)
        if isinstance(outcome, Split):  # asked for again in parts, outside the except block
            return outcome.combine([self._call(part()) for part in outcome.parts])
        return outcome

    def _connected(self, timeout: float | None) -> float | None:
        """What is left of `timeout` once the channel is connected; raises a grpc error for the call's
        on_error when it cannot be (see _connection.py). The blocking channel has no public way to ask
        its state, so this uses its core channel's; without one, calls go out unchecked."""
        core = getattr(self._channel, "_channel", None)
        if core is None or not hasattr(core, "watch_connectivity_state"):
            return timeout
        state = _connection.BY_CODE[core.check_connectivity_state(True)]
        if state is _connection.READY:
            return timeout
        gate = _connection.Gate(self._core.target, timeout)
        while state in _connection.PENDING:
            left = gate.left()
            until = time.time() + (CONNECT_POLL if left is None else min(left, CONNECT_POLL))
            if not core.watch_connectivity_state(state.value[0], until).success and gate.left() == 0:
                raise gate.timed_out()
            state = _connection.BY_CODE[core.check_connectivity_state(True)]
        if state is _connection.NOT_CONNECTED:
            raise gate.not_connected()
        return gate.left()

    def _walk(self, pages: Pages[Any]) -> Generator[Any, None, None]:
        page_token = ""
        while True:
            page = self._call(pages.page(page_token))
            yield from page.items
            if not (page_token := page.next_page_token):
                return

    def _exchange(self, exchange: Exchange[Any]) -> Generator[Any, None, None]:
        rpc, requests = getattr(self._stub, exchange.method), exchange.requests
        if isinstance(requests, Iterable):  # a request stream; one message for a server stream
            requests = iter(requests)
        call = rpc(requests, timeout=exchange.timeout, metadata=self._core.authorized(exchange.metadata))
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
                stream.request_for(cursor.resume_token),
                timeout=cursor.remaining(),
                metadata=self._core.authorized(stream.metadata),
            )
            error: grpc.RpcError | None = None
            try:
                if cursor.listener is not None:
                    call.initial_metadata()  # the headers, or the end of a call refused at once
                    if not call.done():  # (see WatchCursor.opened)
                        cursor.opened()
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
