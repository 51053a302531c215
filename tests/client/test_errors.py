"""Every status code becomes its own typed error, raised at the await, chained from the grpc error, with
the rich details unpacked; the sync client maps errors the same way."""

from __future__ import annotations

import asyncio
import datetime

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from microstate.client import errors
from microstate.client.errors import MicrostateError, exception_class_for, from_grpc_error
from microstate.client.profile.v1 import Profile, ProfileClient, SyncProfileClient
from tests.client.conftest import fast_options
from tests.client.harness import RestartableServer
from tests.client.scripted import FinishedCall, ScriptedProfiles, plain_status, rich_status

EXPECTED = {
    grpc.StatusCode.CANCELLED: errors.Cancelled,
    grpc.StatusCode.UNKNOWN: errors.Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: errors.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
    grpc.StatusCode.INTERNAL: errors.Internal,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
}


def test_the_table_covers_every_error_code() -> None:
    assert set(EXPECTED) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    for code, error_class in EXPECTED.items():
        assert exception_class_for(code) is error_class and error_class.code is code
        assert issubclass(error_class, MicrostateError)


def _all_details() -> tuple[
    error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure, error_details_pb2.RetryInfo
]:
    delay = duration_pb2.Duration()
    delay.FromTimedelta(datetime.timedelta(milliseconds=1500))
    return (
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="profile.user_id", description="too long")
            ]
        ),
        error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="ETAG", subject="profiles/x", description="old"
                )
            ]
        ),
        error_details_pb2.RetryInfo(retry_delay=delay),
    )


@pytest.mark.parametrize("code", list(EXPECTED), ids=lambda code: code.name)
async def test_each_code_raises_its_class_with_details(
    code: grpc.StatusCode, scripted: tuple[ScriptedProfiles, RestartableServer]
) -> None:
    servicer, server = scripted
    servicer.headers_first.add("CreateProfile")  # as real writes do, so not even CANCELLED is retried
    servicer.fail(
        "CreateProfile",
        rich_status(code, "it went wrong", "SOME_REASON", *_all_details(), metadata={"k": "v"}),
        times=2,  # a write whose answer may be lost (UNAVAILABLE, CANCELLED) is sent once more
    )
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(MicrostateError) as caught:
            await client.create(Profile(user_id="x"))

    error = caught.value
    assert type(error) is EXPECTED[code] and error.code is code
    assert isinstance(error.__cause__, grpc.aio.AioRpcError) and error.__cause__.code() is code
    assert (error.message, error.reason, error.domain, dict(error.metadata)) == (
        "it went wrong",
        "SOME_REASON",
        "microstate.dev",
        {"k": "v"},
    )
    assert [(v.field, v.description) for v in error.field_violations] == [("profile.user_id", "too long")]
    assert [(v.type, v.subject) for v in error.precondition_violations] == [("ETAG", "profiles/x")]
    assert error.retry_delay == 1.5
    assert error.status is not None and error.status.code == code.value[0]
    assert str(error) == f"{code.name} (SOME_REASON): it went wrong"


async def test_plain_status_without_details(scripted: tuple[ScriptedProfiles, RestartableServer]) -> None:
    servicer, server = scripted
    servicer.fail("DeleteProfile", plain_status(grpc.StatusCode.PERMISSION_DENIED, "no"))
    async with ProfileClient(options=fast_options(server.target)) as client:
        with pytest.raises(errors.PermissionDenied) as caught:
            await client.delete("x")
    assert caught.value.reason == "" and caught.value.status is None and caught.value.retry_delay is None


def test_malformed_or_contradicting_details_still_give_the_typed_error() -> None:
    garbage = FinishedCall(
        grpc.StatusCode.NOT_FOUND, "gone", (("grpc-status-details-bin", b"\xff\xff not a status"),)
    )
    contradicting_status = rich_status(grpc.StatusCode.INTERNAL, "other", "X").trailing_metadata
    contradicting = FinishedCall(grpc.StatusCode.NOT_FOUND, "gone", contradicting_status)
    for call in (garbage, contradicting):
        error = from_grpc_error(call)
        assert type(error) is errors.NotFound and error.message == "gone" and error.reason == ""


def test_a_bare_rpc_error_is_unknown() -> None:
    assert type(from_grpc_error(grpc.RpcError("boom"))) is errors.Unknown


async def test_sync_client_raises_the_same_typed_errors(
    scripted: tuple[ScriptedProfiles, RestartableServer],
) -> None:
    servicer, server = scripted
    servicer.fail(
        "UpdateProfile",
        rich_status(grpc.StatusCode.ABORTED, "stale", "ETAG_MISMATCH", metadata={"current_etag": "e9"}),
    )

    def update() -> None:
        with SyncProfileClient(options=fast_options(server.target)) as client:
            client.update(Profile(user_id="x", etag="e1"), ["display_name"])

    with pytest.raises(errors.Aborted) as caught:
        await asyncio.to_thread(update)  # the server runs on this loop: block another thread, not it
    assert caught.value.metadata["current_etag"] == "e9"
    assert isinstance(caught.value.__cause__, grpc.RpcError) and isinstance(caught.value.__cause__, grpc.Call)
