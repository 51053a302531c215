"""Protobuf wire bytes built by concatenation, and a service registration that sends such bytes as they are.

Hot reads answer with cached, already serialized messages: a repeated message or string field on the wire
is nothing but, per element, its tag, the element's length as a varint and the element's bytes, so a
response made of cached elements is a join, with no message built, copied or serialized per call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from microstate.server import requests

_LENGTH_DELIMITED = 2  # the wire type of messages, strings and bytes


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (a message, string or bytes) on the wire: tag, length, payload."""
    return varint(number << 3 | _LENGTH_DELIMITED) + varint(len(payload)) + payload


def repeated(number: int, elements: Iterable[bytes]) -> bytes:
    """A repeated length-delimited field holding `elements`."""
    return b"".join([field(number, element) for element in elements])


def serialize(response: Message | bytes) -> bytes:
    """The response serializer: a message is serialized, ready wire bytes go out unchanged."""
    return response if isinstance(response, bytes) else response.SerializeToString()


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: Any) -> None:
    """Serve `service` with the servicer's methods of the same names, which may return messages or bytes.

    What the generated add_*Servicer_to_server helper does, but with `serialize` as every response
    serializer (the generated one accepts messages only), and requests that cannot be decoded answered
    INVALID_ARGUMENT (requests.py).
    """
    handlers = {
        method.name: requests.method_handler(method, getattr(servicer, method.name), serialize)
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
