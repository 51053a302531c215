"""Method handlers that answer an undecodable request with INVALID_ARGUMENT, for every microstate.

grpc.aio decodes a request with the handler's request deserializer before it calls the method, outside any
code of ours. An exception there (protobuf's DecodeError, for corrupt wire bytes or bad UTF-8 in a string
field) makes grpc log a traceback and answer UNKNOWN "Unexpected <class DecodeError>" with no details, for
every such request: a client error becomes a server fault, and anyone can flood the log. So the deserializers
built here never raise: they hand the method an `Undecodable` instead, which the handler answers with
MalformedRequest, logging at most one line per method per LOG_INTERVAL_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from microstate.server.errors import DomainError
from microstate.server.logs import Throttle

LOG_INTERVAL_SECONDS = 60.0
log = logging.getLogger(__name__)
_log_throttle = Throttle(LOG_INTERVAL_SECONDS)


class MalformedRequest(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "MALFORMED_REQUEST"

    def __init__(self, method: str, request_type: str, problem: str) -> None:
        super().__init__(
            f"the request to {method} is not a valid {request_type}: {problem}",
            metadata={"method": method, "request_type": request_type},
        )
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What the deserializer returns in place of a request it cannot decode."""

    problem: str


def path_of(method: MethodDescriptor) -> str:
    """The HTTP/2 path of `method`: "/microstate.profile.v1.ProfileService/GetProfile"."""
    return f"/{method.containing_service.full_name}/{method.name}"


def _deserializer(method: MethodDescriptor) -> Callable[[bytes], Any]:
    parse = GetMessageClass(method.input_type).FromString

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            # upb: "Error parsing message with type 'T': Wire format was corrupt"; the type is named apart.
            return Undecodable(str(exc).rpartition(": ")[2])

    return deserialize


def method_handler(
    method: MethodDescriptor, behaviour: Callable[..., Any], response_serializer: Callable[[Any], bytes]
) -> grpc.RpcMethodHandler:
    """The handler of `method`, of any call kind, that calls `behaviour` (a coroutine function; an async
    generator function for a streaming response) with decoded requests only. A streamed request that
    cannot be decoded ends the call with MalformedRequest when the behaviour reaches it."""
    path, request_type = path_of(method), method.input_type.full_name

    async def refuse(problem: str, context: grpc.aio.ServicerContext) -> None:
        held_back = _log_throttle.admit(path)
        if held_back is not None:
            log.warning(
                "undecodable request refused",
                extra={"method": path, "problem": problem, "held_back": held_back},
            )
        await context.abort_with_status(MalformedRequest(path, request_type, problem).to_status())

    async def decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Undecodable):
                raise MalformedRequest(path, request_type, request.problem)
            yield request

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not method.client_streaming:
            if isinstance(request, Undecodable):
                return await refuse(request.problem, context)  # raises, ending the call
            return await behaviour(request, context)
        try:
            return await behaviour(decoded(request), context)
        except MalformedRequest as exc:  # unless the behaviour's own error mapping answered it already
            await refuse(exc.problem, context)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await refuse(request.problem, context)  # raises, ending the call
            return
        try:
            async for response in behaviour(
                decoded(request) if method.client_streaming else request, context
            ):
                yield response
        except MalformedRequest as exc:
            await refuse(exc.problem, context)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[method.client_streaming, method.server_streaming]
    return make(
        stream if method.server_streaming else unary,
        request_deserializer=_deserializer(method),
        response_serializer=response_serializer,
    )
