"""Session writes send their headers first, like every microstate's writes (microstate.server.commit): gRPC
retries never re-send one that reached its handler, so a drain's CANCELLED retry cannot apply it twice (a
retried RevokeUserSessions would also revoke sessions made in between). GetSession, a read, is the control."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from microstate.server.session import MICROSTATE, attach_with
from microstate.server.session.tokens import ServerKey
from microstate.server.store.base import Store
from microstate.session.v1 import session_pb2 as pb
from microstate.session.v1 import session_pb2_grpc
from tests.profile.test_write_commit import ATTEMPTS, CountCalls, retrying
from tests.session.conftest import Clock
from tests.support.inproc import serve_in_process

SERVICE = "microstate.session.v1.SessionService"
CASES = [
    ("CreateSession", pb.CreateSessionRequest(user_id="no spaces allowed"), "INVALID_ARGUMENT"),
    ("RefreshSession", pb.RefreshSessionRequest(refresh_token="msr_not-a-token"), "UNAUTHENTICATED"),
    ("RevokeSession", pb.RevokeSessionRequest(session_id="f" * 32), "NOT_FOUND"),
    ("RevokeUserSessions", pb.RevokeUserSessionsRequest(user_id="no spaces allowed"), "INVALID_ARGUMENT"),
    ("GetSession", pb.GetSessionRequest(session_id="f" * 32), "NOT_FOUND"),
]


@pytest.mark.parametrize(("method", "request_message", "code_name"), CASES, ids=[case[0] for case in CASES])
async def test_only_a_call_whose_handler_never_sent_headers_is_retried(
    store: Store, key: ServerKey, clock: Clock, method: str, request_message: object, code_name: str
) -> None:
    code = grpc.StatusCode[code_name]
    counter = CountCalls()
    microstate = dataclasses.replace(MICROSTATE, attach=attach_with(key, clock=clock))
    async with (
        serve_in_process(microstate, store, interceptors=[counter]) as target,
        grpc.aio.insecure_channel(target, options=retrying(code, SERVICE)) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await getattr(session_pb2_grpc.SessionServiceStub(channel), method)(request_message)
    assert failed.value.code() == code
    assert counter.calls[method] == (ATTEMPTS if method == "GetSession" else 1)
