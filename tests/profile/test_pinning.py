"""A call to a contract version the server does not serve gets a clear error naming both versions; a call to
a method a served version lacks (a newer client calling an RPC added later) is UNIMPLEMENTED, naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2

from microstate.client import CONTRACT_METADATA_KEY
from microstate.client.errors import Unimplemented, from_grpc_error
from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.server.pinning import refuse_unserved_contracts
from microstate.server.profile import MICROSTATE
from microstate.server.store.base import Store
from microstate.server.store.roles import Stores
from tests.support.rpc_errors import details, fails


@pytest.fixture
async def pinned_channel(store: Store) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    MICROSTATE.attach(server, Stores.of(store))
    refuse_unserved_contracts(server, MICROSTATE.service_names)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def test_a_served_version_passes(pinned_channel: grpc.aio.Channel) -> None:
    stub = v1_grpc.ProfileServiceStub(pinned_channel)
    metadata = ((CONTRACT_METADATA_KEY, "microstate.profile.v1"),)
    await stub.CreateProfile(v1.CreateProfileRequest(profile=v1.Profile(user_id="u1")), metadata=metadata)


V3_GET = "/microstate.profile.v3.ProfileService/GetProfile"


@pytest.mark.parametrize(
    "metadata", [((CONTRACT_METADATA_KEY, "microstate.profile.v3"),), ()], ids=["pinned", "no-header"]
)
async def test_an_unserved_version_names_both_versions(
    pinned_channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    call = pinned_channel.unary_unary(
        V3_GET,
        request_serializer=v1.GetProfileRequest.SerializeToString,
        response_deserializer=v1.Profile.FromString,
    )
    unpacked = await fails(
        call(v1.GetProfileRequest(user_id="u1"), metadata=metadata),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTRACT_VERSION_NOT_SERVED",
    )
    info = unpacked["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["requested"] == "microstate.profile.v3"
    assert info.metadata["served"] == "microstate.profile.v1, microstate.profile.v2"


async def test_an_unserved_version_of_a_streaming_method_is_refused_the_same_way(
    pinned_channel: grpc.aio.Channel,
) -> None:
    watch = pinned_channel.unary_stream(
        "/microstate.profile.v3.ProfileService/WatchProfiles",
        request_serializer=v1.WatchProfilesRequest.SerializeToString,
        response_deserializer=v1.WatchProfilesResponse.FromString,
    )

    async def first_event() -> object:
        async for event in watch(v1.WatchProfilesRequest()):
            return event
        return None

    await fails(first_event(), grpc.StatusCode.FAILED_PRECONDITION, "CONTRACT_VERSION_NOT_SERVED")


async def test_unknown_services_elsewhere_stay_unimplemented(pinned_channel: grpc.aio.Channel) -> None:
    call = pinned_channel.unary_unary("/other.Service/Method")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    "service", ["microstate.profile.v1.ProfileService", "microstate.profile.v2.ProfileService"]
)
async def test_an_unknown_method_of_a_served_version_is_unimplemented_naming_it(
    pinned_channel: grpc.aio.Channel, service: str
) -> None:
    call = pinned_channel.unary_unary(f"/{service}/NoSuchMethod")
    metadata = ((CONTRACT_METADATA_KEY, service.rpartition(".")[0]),)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"", metadata=metadata)
    error = raised.value
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED, error.details()
    assert f"{service}/NoSuchMethod" in (error.details() or "")
    info = details(error)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("METHOD_NOT_IMPLEMENTED", "microstate.dev")
    assert (info.metadata["service"], info.metadata["method"]) == (service, "NoSuchMethod")

    typed = from_grpc_error(error)  # what the SDK raises for it
    assert isinstance(typed, Unimplemented) and typed.reason == "METHOD_NOT_IMPLEMENTED"
    assert typed.metadata["method"] == "NoSuchMethod"


async def test_an_unknown_streaming_method_of_a_served_version_is_unimplemented_too(
    pinned_channel: grpc.aio.Channel,
) -> None:
    watch = pinned_channel.unary_stream("/microstate.profile.v1.ProfileService/WatchEverything")

    async def first_event() -> object:
        async for event in watch(b""):
            return event
        return None

    await fails(first_event(), grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_IMPLEMENTED")
