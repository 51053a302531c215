"""A write handler sends its response headers before it does anything else, so a write that reached its
handler is committed: gRPC retries never re-send it, whatever status it ends with (gRFC A6). The SDK's retry
of a write that ended CANCELLED rests on this (see microstate.server.runtime).

The client here retries the very status each call ends with; only a call that is not committed can be
retried. Reads are the control: they send no early headers, so the same policy does retry them.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Awaitable, Callable

import grpc
import pytest

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.profile import MICROSTATE
from microstate.server.store.base import Store
from tests.support.inproc import serve_in_process

ATTEMPTS = 3
SERVICE = "microstate.profile.v1.ProfileService"


class CountCalls(grpc.aio.ServerInterceptor):
    """Counts the calls that reach the server, per method name."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.calls[handler_call_details.method.rpartition("/")[2]] += 1
        return await continuation(handler_call_details)


def retrying(code: grpc.StatusCode, service: str = SERVICE) -> list[tuple[str, str | int]]:
    policy = {
        "maxAttempts": ATTEMPTS,
        "initialBackoff": "0.01s",
        "maxBackoff": "0.01s",
        "backoffMultiplier": 1,
        "retryableStatusCodes": [code.name],
    }
    config = {"methodConfig": [{"name": [{"service": service}], "retryPolicy": policy}]}
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config))]


CASES = [
    ("CreateProfile", pb.CreateProfileRequest(profile=pb.Profile(user_id="taken")), "ALREADY_EXISTS"),
    ("UpdateProfile", pb.UpdateProfileRequest(profile=pb.Profile(user_id="nobody")), "NOT_FOUND"),
    ("DeleteProfile", pb.DeleteProfileRequest(user_id="nobody"), "NOT_FOUND"),
    ("GetProfile", pb.GetProfileRequest(user_id="nobody"), "NOT_FOUND"),
]


@pytest.mark.parametrize(("method", "request_message", "code_name"), CASES, ids=[case[0] for case in CASES])
async def test_only_a_call_whose_handler_never_sent_headers_is_retried(
    store: Store, method: str, request_message: object, code_name: str
) -> None:
    code = grpc.StatusCode[code_name]
    counter = CountCalls()
    async with (
        serve_in_process(MICROSTATE, store, interceptors=[counter]) as target,
        grpc.aio.insecure_channel(target, options=retrying(code)) as channel,
    ):
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        await stub.CreateProfile(pb.CreateProfileRequest(profile=pb.Profile(user_id="taken")))
        counter.calls.clear()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await getattr(stub, method)(request_message)
    assert failed.value.code() == code
    assert counter.calls[method] == (ATTEMPTS if method == "GetProfile" else 1)
