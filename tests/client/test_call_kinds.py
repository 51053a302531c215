"""Client-streaming and bidirectional calls, end to end: operations declared like any other in the SDK, and
the kit's service registration (wire.add_service) on a real grpc.aio server.

The service is a test one, described in a private descriptor pool over google.protobuf.StringValue, so the
call kinds are proved before a slice needs them (model upload streams its chunks; an exchange answers each
message as it comes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.wrappers_pb2 import StringValue

from microstate.client import ClientOptions
from microstate.client._aio import AsyncClient
from microstate.client._base import ClientBase, Contract, raise_typed
from microstate.client._operations import iterated, unary
from microstate.client._plans import Exchange, Unary
from microstate.client._sync import SyncClient
from microstate.client.errors import InvalidArgument
from microstate.server.kit import wire

SERVICE = "microstate.test.v1.TransferService"


async def upload(requests: AsyncIterator[StringValue], context: grpc.aio.ServicerContext) -> StringValue:
    parts = [request.value async for request in requests]
    if "bad" in parts:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a bad chunk")
    return StringValue(value="|".join(parts))


async def echo(
    requests: AsyncIterator[StringValue], context: grpc.aio.ServicerContext
) -> AsyncIterator[StringValue]:
    async for request in requests:
        if request.value == "bad":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a bad message")
        yield StringValue(value=request.value.upper())


class TransferStub:
    def __init__(self, channel: Any) -> None:
        codec = {
            "request_serializer": StringValue.SerializeToString,
            "response_deserializer": StringValue.FromString,
        }
        self.Upload = channel.stream_unary(f"/{SERVICE}/Upload", **codec)
        self.Echo = channel.stream_stream(f"/{SERVICE}/Echo", **codec)


class TransferOperations(ClientBase):
    CONTRACT = Contract("microstate.test.v1", SERVICE, (), "test", "localhost:1")
    _stub_class = TransferStub

    @unary
    def upload(self, parts: Any, *, timeout: float | None = None) -> Unary[StringValue, str]:
        """Send every part as one message of a client stream; the answer joins them."""
        return Unary(
            "Upload", parts, self._core.timeout(timeout), self._core.metadata(None), _value, raise_typed
        )

    @iterated
    def echo(self, words: Any, *, timeout: float | None = None) -> Exchange[str]:
        """Each word sent comes back in capitals, as it is sent."""
        return Exchange("Echo", words, self._core.timeout(timeout), self._core.metadata(None), _value)


def _value(message: StringValue) -> str:
    return message.value


class AsyncTransfers(AsyncClient, TransferOperations):
    pass


class SyncTransfers(SyncClient, TransferOperations):
    pass


def transfer_service() -> ServiceDescriptor:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="microstate/test/v1/transfer.proto",
        package="microstate.test.v1",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    service = file.service.add(name="TransferService")
    for name, server_streaming in (("Upload", False), ("Echo", True)):
        service.method.add(
            name=name,
            input_type=".google.protobuf.StringValue",
            output_type=".google.protobuf.StringValue",
            client_streaming=True,
            server_streaming=server_streaming,
        )
    pool.Add(file)
    return pool.FindServiceByName(SERVICE)


class Transfers:
    Upload = staticmethod(upload)
    Echo = staticmethod(echo)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    server = grpc.aio.server()
    wire.add_service(server, transfer_service(), Transfers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


def _words(*values: str) -> Iterator[StringValue]:
    return (StringValue(value=v) for v in values)


async def _async_words(*values: str) -> AsyncIterator[StringValue]:
    for value in values:
        yield StringValue(value=value)


async def test_async_client_streams_requests_and_exchanges_messages(target: str) -> None:
    async with AsyncTransfers(options=ClientOptions(target=target, timeout=5)) as client:
        assert await client.upload(_async_words("a", "b", "c")) == "a|b|c"
        assert await client.upload(_words("sync", "iterable")) == "sync|iterable"
        assert [word async for word in client.echo(_async_words("x", "y"))] == ["X", "Y"]


async def test_async_stream_failures_raise_typed_errors(target: str) -> None:
    async with AsyncTransfers(options=ClientOptions(target=target, timeout=5)) as client:
        with pytest.raises(InvalidArgument, match="bad chunk"):
            await client.upload(_async_words("a", "bad"))
        answers: list[str] = []
        with pytest.raises(InvalidArgument, match="bad message"):
            async for word in client.echo(_async_words("ok", "bad", "never")):
                answers.append(word)
        assert answers == ["OK"]


async def test_sync_client_streams_requests_and_exchanges_messages(target: str) -> None:
    def use() -> tuple[str, list[str]]:
        with SyncTransfers(options=ClientOptions(target=target, timeout=5)) as client:
            parts: Iterable[StringValue] = list(_words("a", "b"))
            with pytest.raises(InvalidArgument):
                list(client.echo(_words("bad")))
            return client.upload(parts), list(client.echo(_words("p", "q")))

    assert await asyncio.to_thread(use) == ("a|b", ["P", "Q"])


async def test_an_undecodable_message_in_a_request_stream_is_invalid_argument(target: str) -> None:
    bad_utf8 = b"\x0a\x02\xc3\x28"  # StringValue.value holding bytes that are not UTF-8
    async with grpc.aio.insecure_channel(target) as channel:
        for method in ("Upload", "Echo"):
            call = getattr(channel, "stream_unary" if method == "Upload" else "stream_stream")(
                f"/{SERVICE}/{method}"
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                response = call(iter([StringValue(value="ok").SerializeToString(), bad_utf8]), timeout=5)
                if method == "Upload":
                    await response
                else:
                    async for _ in response:
                        pass
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, method
            assert "MALFORMED_REQUEST" in str(caught.value.trailing_metadata()), method
