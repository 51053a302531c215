"""A client pinned to a contract version the server does not serve gets a clear error naming both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2

from microstate.profile.v1 import profile_pb2 as v1
from microstate.profile.v1 import profile_pb2_grpc as v1_grpc
from microstate.server.pinning import CONTRACT_METADATA_KEY, ContractPinningInterceptor
from microstate.server.profile import MICROSTATE
from microstate.server.store.base import Store
from tests.support.rpc_errors import fails


@pytest.fixture
async def pinned_channel(store: Store) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[ContractPinningInterceptor(MICROSTATE.service_names)])
    MICROSTATE.attach(server, store)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def test_a_served_version_passes(pinned_channel: grpc.aio.Channel) -> None:
    stub = v1_grpc.ProfileServiceStub(pinned_channel)
    metadata = ((CONTRACT_METADATA_KEY, "microstate.profile.v1"),)
    await stub.CreateProfile(v1.CreateProfileRequest(profile=v1.Profile(user_id="u1")), metadata=metadata)


@pytest.mark.parametrize(
    "method",
    ["/microstate.profile.v3.ProfileService/GetProfile", "/microstate.profile.v1.ProfileService/GetProfile"],
)
async def test_an_unserved_version_names_both_versions(pinned_channel: grpc.aio.Channel, method: str) -> None:
    call = pinned_channel.unary_unary(
        method,
        request_serializer=v1.GetProfileRequest.SerializeToString,
        response_deserializer=v1.Profile.FromString,
    )
    unpacked = await fails(
        call(
            v1.GetProfileRequest(user_id="u1"), metadata=((CONTRACT_METADATA_KEY, "microstate.profile.v3"),)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTRACT_VERSION_NOT_SERVED",
    )
    info = unpacked["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["requested"] == "microstate.profile.v3"
    assert info.metadata["served"] == "microstate.profile.v1, microstate.profile.v2"
