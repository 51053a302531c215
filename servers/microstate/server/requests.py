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
    """The handler of `method` (unary request; unary or server-streaming response) that calls `behaviour`, a
    coroutine function (an async generator function for a streaming response), with decoded requests only."""
    if method.client_streaming:
        raise NotImplementedError(f"{method.full_name}: client streaming is not supported here")
    path, request_type = path_of(method), method.input_type.full_name

    async def refuse(request: Undecodable, context: grpc.aio.ServicerContext) -> None:
        held_back = _log_throttle.admit(path)
        if held_back is not None:
            log.warning(
                "undecodable request refused",
                extra={"method": path, "problem": request.problem, "held_back": held_back},
            )
        await context.abort_with_status(MalformedRequest(path, request_type, request.problem).to_status())

    if method.server_streaming:

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await refuse(request, context)  # raises, ending the call
                return
            async for response in behaviour(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=_deserializer(method), response_serializer=response_serializer
        )

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            return await refuse(request, context)  # raises, ending the call
        return await behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=_deserializer(method), response_serializer=response_serializer
    )
