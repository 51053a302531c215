"""Errors that echo client input (an etag, an update_mask path) echo a bounded part of it: a 16 KB echo used
to push the status past the client's metadata limit, and the client saw RESOURCE_EXHAUSTED "Stream removed"
instead of the real error."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from microstate.server.profile import CODECS
from microstate.server.profile.servicer import Codec
from tests.support.rpc_errors import details

HUGE = 16 * 1024
MAX_METADATA_BYTES = 4096
"""What the rich status may take on the wire: half of gRPC's default 8 KiB metadata limit."""

VERSIONS = [pytest.param(codec, id=codec.contract.name.rsplit(".", 1)[-1]) for codec in CODECS]


def call(channel: grpc.aio.Channel, codec: Codec, method: str, request: Any) -> Any:
    response_type = codec.pb.DeleteProfileResponse if method == "DeleteProfile" else codec.pb.Profile
    return channel.unary_unary(
        f"/{codec.service_name}/{method}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )(request)


def metadata_size(error: grpc.aio.AioRpcError) -> int:
    """Bytes of the status as sent: the message (grpc-message) and the trailing metadata."""
    trailing = error.trailing_metadata() or ()
    return len(error.details().encode()) + sum(len(key) + len(value) for key, value in trailing)


async def failure(
    channel: grpc.aio.Channel, codec: Codec, method: str, request: Any, code: grpc.StatusCode, reason: str
) -> tuple[str, dict[str, object]]:
    """The message and unpacked details of the call's error, which has `code` and `reason`, and fits."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(channel, codec, method, request)
    error = caught.value
    assert error.code() == code, error.details()
    unpacked = details(error)
    info = unpacked["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == reason
    assert metadata_size(error) < MAX_METADATA_BYTES
    return error.details(), unpacked


@pytest.fixture
async def created(channel: grpc.aio.Channel) -> None:
    codec = CODECS[0]
    await call(
        channel, codec, "CreateProfile", codec.pb.CreateProfileRequest(profile=codec.pb.Profile(user_id="u1"))
    )


@pytest.mark.usefixtures("created")
@pytest.mark.parametrize("codec", VERSIONS)
@pytest.mark.parametrize("method", ["UpdateProfile", "DeleteProfile"])
async def test_a_huge_stale_etag_is_aborted_with_a_bounded_echo(
    channel: grpc.aio.Channel, codec: Codec, method: str
) -> None:
    etag = "e" * HUGE
    if method == "UpdateProfile":
        request = codec.pb.UpdateProfileRequest(profile=codec.pb.Profile(user_id="u1", etag=etag))
    else:
        request = codec.pb.DeleteProfileRequest(user_id="u1", etag=etag)

    message, unpacked = await failure(
        channel, codec, method, request, grpc.StatusCode.ABORTED, "ETAG_MISMATCH"
    )
    assert "PreconditionFailure" in unpacked
    assert message.startswith("etag 'eeee") and "…" in message  # the start of the echo, elided
    assert message.endswith("re-read and retry")  # and the end of the message, which says what to do


@pytest.mark.usefixtures("created")
@pytest.mark.parametrize("codec", VERSIONS)
async def test_a_huge_update_mask_path_is_invalid_argument_with_a_bounded_echo(
    channel: grpc.aio.Channel, codec: Codec
) -> None:
    request = codec.pb.UpdateProfileRequest(
        profile=codec.pb.Profile(user_id="u1"), update_mask=field_mask_pb2.FieldMask(paths=["p" * HUGE])
    )
    message, unpacked = await failure(
        channel, codec, "UpdateProfile", request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK"
    )
    assert "BadRequest" in unpacked
    assert "pppp…pppp" in message
    assert "'; updatable: " in message  # the end, which says what is updatable, is kept
