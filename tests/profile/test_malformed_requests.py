"""A request body that is not a valid message of the method's request type (corrupt wire format, bad UTF-8 in
a string field) gets INVALID_ARGUMENT with ErrorInfo reason MALFORMED_REQUEST on every method of every served
version, and a flood of them leaves the server log almost untouched."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from microstate.server import requests
from microstate.server.profile import CODECS, wire
from tests.support.processes import json_lines, running_server
from tests.support.rpc_errors import fails


def user_id_path(message: Descriptor) -> Iterator[FieldDescriptor]:
    """The fields down to the first user id string in `message` (user_id, user_ids, user_id_prefix)."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING and field.name.startswith("user_id"):
            yield field
            return
    for field in message.fields:
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            inner = list(user_id_path(field.message_type))
            if inner:
                yield field
                yield from inner
                return


def bad_utf8_in_user_id(method: MethodDescriptor) -> bytes:
    path = list(user_id_path(method.input_type))
    assert path, f"{method.input_type.full_name} has no user id field"
    body = b"\xc3\x28"  # a two-byte UTF-8 lead byte followed by a non-continuation byte
    for field in reversed(path):
        body = wire.field(field.number, body)
    return body


def garbage() -> bytes:
    return random.Random(10).randbytes(64)


BODIES = {
    "garbage": lambda method: garbage(),
    "truncated_varint": lambda method: b"\x08\x80",  # field 1, a varint whose continuation bit leads nowhere
    "length_past_the_end": lambda method: b"\x0a\x10ab",  # field 1 claims 16 bytes, 2 follow
    "bad_utf8_in_user_id": bad_utf8_in_user_id,
}

METHODS = [
    pytest.param(method, id=f"{method.containing_service.full_name.split('.')[-2]}.{method.name}")
    for codec in CODECS
    for method in codec.service.methods
]


async def call_raw(channel: grpc.aio.Channel, method: MethodDescriptor, body: bytes) -> None:
    """Send `body` as it is (identity serializer); for a streaming method, read the stream to its end."""
    if method.server_streaming:
        async for _ in channel.unary_stream(requests.path_of(method))(body, timeout=10):
            pass
    else:
        await channel.unary_unary(requests.path_of(method))(body, timeout=10)


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("method", METHODS)
async def test_an_undecodable_request_is_invalid_argument_with_error_info(
    channel: grpc.aio.Channel, method: MethodDescriptor, body: str
) -> None:
    raw = BODIES[body](method)
    with pytest.raises(DecodeError):  # the body really is undecodable, so the test tests something
        GetMessageClass(method.input_type).FromString(raw)

    unpacked = await fails(
        call_raw(channel, method, raw), grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"
    )
    info = unpacked["ErrorInfo"]
    assert info.metadata["method"] == requests.path_of(method)  # type: ignore[attr-defined]
    assert info.metadata["request_type"] == method.input_type.full_name  # type: ignore[attr-defined]


async def test_a_valid_request_still_decodes(channel: grpc.aio.Channel) -> None:
    (get,) = [m for m in CODECS[0].service.methods if m.name == "GetProfile"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_raw(channel, get, wire.field(1, b"nobody"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


FLOOD = 1000
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.process
async def test_a_flood_of_undecodable_requests_leaves_a_bounded_log(tmp_path: Path) -> None:
    methods = [m for codec in CODECS for m in codec.service.methods]
    with running_server("profile", tmp_path) as server:
        logged_before = len(server.errors().splitlines())
        started = time.monotonic()
        async with grpc.aio.insecure_channel(server.target) as channel:
            for start in range(0, FLOOD, 100):  # 100 in flight at a time: a flood, not a queue of 1,000
                batch = [methods[i % len(methods)] for i in range(start, start + 100)]
                outcomes = await asyncio.gather(
                    *(call_raw(channel, method, garbage()) for method in batch), return_exceptions=True
                )
                refused = [isinstance(o, grpc.aio.AioRpcError) and o.code() == INVALID for o in outcomes]
                assert all(refused), outcomes
        # Each answer was sent after its log line, if any, was written (unbuffered): nothing is still coming.
        lines = server.errors().splitlines()[logged_before:]
        intervals = 1 + int((time.monotonic() - started) // requests.LOG_INTERVAL_SECONDS)
    # At most one line per method per interval, however many requests.
    assert 1 <= len(lines) <= len(methods) * intervals, "\n".join(lines[:20])
    records = json_lines("\n".join(lines))
    assert len(records) == len(lines), "\n".join(lines[:20])  # one JSON line each, no traceback
    assert all(record["msg"].startswith("undecodable request") for record in records), records
