"""Assertions on rich gRPC errors (google.rpc.Status details) for raw-stub tests."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """Unpack the google.rpc details of a failed call by type name."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    unpacked: dict[str, object] = {}
    for kind in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.PreconditionFailure,
    ):
        for detail in status.details:
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked[kind.DESCRIPTOR.name] = message
    return unpacked


async def fails(call: object, code: grpc.StatusCode, reason: str) -> dict[str, object]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    unpacked = details(caught.value)
    info = unpacked["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, "microstate.dev")
    return unpacked


def violated_fields(unpacked: dict[str, object]) -> list[str]:
    bad = unpacked["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    return [v.field for v in bad.field_violations]
