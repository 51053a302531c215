"""A test-only interceptor that slows the unary calls of a microstate, so drain tests have calls in flight.

Each unary call to the microstate's own services waits before its handler runs; health and reflection are
never delayed. Servers get it through tests.support.hooked_server (`--slow-calls SECONDS`): the production
package has no test hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

DELAYING = "test hook: delaying call"
"""Logged as each call starts waiting, so a test can tell when its calls are really in flight."""
log = logging.getLogger(__name__)


class SlowCallsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, delay_seconds: float, service_names: Sequence[str]) -> None:
        self._delay = delay_seconds
        self._prefixes = tuple(f"/{name}/" for name in service_names)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        inner = handler.unary_unary
        delay = self._delay

        method = handler_call_details.method

        async def slow(request: Any, context: grpc.aio.ServicerContext) -> Any:
            log.info(DELAYING, extra={"method": method, "delay_seconds": delay})
            await asyncio.sleep(delay)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            slow,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
