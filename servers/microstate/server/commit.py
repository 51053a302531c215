"""`headers_first`: a write handler sends its response headers before it does anything else.

A gRPC client counts a call as committed once its response headers arrive, and never retries a committed
call, whatever status it ends with (gRFC A6). With headers first, a write that reached its handler is always
committed; a write attempt that fails before any headers arrived never ran, so sending it again cannot apply
it twice. The SDK relies on this to retry a write that ended CANCELLED, the status gRPC gives a call that
races a server shutting down (see microstate.server.runtime). Every write handler of every microstate is
decorated; reads are not (they are retried anyway) and keep the single batch per call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

R = TypeVar("R")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]


def headers_first(method: Handler[R]) -> Handler[R]:
    """Send (empty) response headers, then run the unary write handler `method`."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        await context.send_initial_metadata(())
        return await method(self, request, context)

    return wrapper
