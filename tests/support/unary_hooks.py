"""A base for test-only interceptors that run code of their own in place of some unary calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
"""A unary handler: (request, context) -> response."""


class UnaryHook(grpc.aio.ServerInterceptor):
    """Each unary call whose method starts with one of `prefixes` ("/pkg.Service/" for a whole service,
    "/pkg.Service/Method" for one method) runs `around(method, handler)` instead of `handler`."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self._prefixes = tuple(prefixes)

    def around(self, method: str, handler: Behaviour) -> Behaviour:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefixes):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self.around(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
