"""Server reflection alone is enough for a generic client to find and call both profile contract versions.

Descriptors come from the running server (grpcio-reflection's ProtoReflectionDescriptorDatabase feeding a
fresh DescriptorPool); messages are built with message_factory and called with channel.unary_unary. No
generated stub of ours is imported or involved.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.support.processes import ServerProcess

pytestmark = pytest.mark.process

CALL_TIMEOUT = 5.0
PROFILE_METHODS = {
    "GetProfile",
    "BatchGetProfiles",
    "ListProfiles",
    "CreateProfile",
    "UpdateProfile",
    "DeleteProfile",
    "WatchProfiles",
}
NAMES = {
    "v1": {"display_name": "Lin"},
    "v2": {"name": {"display_name": "Lin", "given_name": "Lin", "family_name": "Wei"}},
}


@pytest.fixture
def channel(profile_server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(profile_server.target) as opened:
        yield opened


def call(channel: grpc.Channel, method: MethodDescriptor, request: dict[str, Any]) -> dict[str, Any]:
    """Call a unary `method` knowing only its descriptor: request and response are JSON-shaped dicts."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    invoke = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    response = invoke(json_format.ParseDict(request, request_class()), timeout=CALL_TIMEOUT)
    return json_format.MessageToDict(response, preserving_proto_field_name=True)


def test_reflection_lists_both_profile_versions_health_and_reflection(channel: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {
        "microstate.profile.v1.ProfileService",
        "microstate.profile.v2.ProfileService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_generic_client_calls_the_profile_service_through_reflection(
    channel: grpc.Channel, version: str
) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName(f"microstate.profile.{version}.ProfileService")
    methods = service.methods_by_name
    assert set(methods) == PROFILE_METHODS
    user_id = f"reflected-{version}"

    created = call(channel, methods["CreateProfile"], {"profile": {"user_id": user_id, **NAMES[version]}})
    got = call(channel, methods["GetProfile"], {"user_id": user_id})

    assert got == created
    assert {key: got[key] for key in NAMES[version]} == NAMES[version]
    assert got["etag"]
    with pytest.raises(grpc.RpcError) as refused:
        call(channel, methods["GetProfile"], {"user_id": "reflected-nobody"})
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
