"""TEST-ONLY: make every unary call of a microstate slow, so a drain test has calls in flight.

Set `MICROSTATE_TEST_SLOW_CALLS=<seconds>` in a server's environment and each unary call to the
microstate's own services waits that long before its handler runs. Health and reflection are never
delayed. Unset (the normal case), nothing is added. It is an env var, not a flag or a `ServerConfig`
field, on purpose: operators should never find it in `--help`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

ENV_VAR = "MICROSTATE_TEST_SLOW_CALLS"
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
            # Logged so a test can wait until its calls are really in flight before it signals the server.
            log.info("test hook: delaying call", extra={"method": method, "delay_seconds": delay})
            await asyncio.sleep(delay)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            slow,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def interceptors_from_env(service_names: Sequence[str]) -> list[grpc.aio.ServerInterceptor]:
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return []
    return [SlowCallsInterceptor(float(raw), service_names)]
