"""The gRPC surface of microstate.session.v1, served in this process over a real store: each method's
status codes and ErrorInfo reasons as the .proto documents them, and malformed tokens refused before any
store read (a counting wrapper around the real store proves it)."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest
from google.protobuf import duration_pb2

from microstate.server.session.tokens import REFRESH_TOKEN, SESSION_TOKEN
from microstate.session.v1 import session_pb2 as pb
from microstate.session.v1.session_pb2_grpc import SessionServiceStub
from tests.session.conftest import Clock, CountingStore
from tests.support.rpc_errors import fails, violated_fields

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


async def create(
    stub: SessionServiceStub, user_id: str = "ada", **fields: object
) -> pb.CreateSessionResponse:
    response: pb.CreateSessionResponse = await stub.CreateSession(
        pb.CreateSessionRequest(user_id=user_id, **fields)
    )
    return response


async def test_a_session_goes_through_its_life_over_grpc(stub: SessionServiceStub, clock: Clock) -> None:
    created = await create(
        stub, scopes=["read"], attributes={"device": "phone"}, idle_ttl=seconds(60), max_ttl=seconds(3600)
    )
    session = created.session
    assert session.state == pb.SESSION_STATE_ACTIVE
    assert (session.idle_ttl.seconds, session.max_ttl.seconds, session.refresh_count) == (60, 3600, 0)
    assert session.expire_time.ToNanoseconds() == clock.now + 60 * 10**9
    assert not session.HasField("revoke_time")

    validated = await stub.ValidateSession(
        pb.ValidateSessionRequest(token=created.token, required_scopes=["read"])
    )
    assert validated == session
    refreshed = await stub.RefreshSession(pb.RefreshSessionRequest(refresh_token=created.refresh_token))
    assert refreshed.session.refresh_count == 1 and refreshed.token != created.token

    listed = await stub.ListUserSessions(pb.ListUserSessionsRequest(user_id="ada"))
    assert [s.session_id for s in listed.sessions] == [session.session_id] and not listed.next_page_token

    revoked = await stub.RevokeSession(pb.RevokeSessionRequest(session_id=session.session_id))
    assert (revoked.state, revoked.revoke_reason) == (pb.SESSION_STATE_REVOKED, pb.REVOKE_REASON_REVOKED)
    assert revoked.revoke_time.ToNanoseconds() == clock.now
    assert await stub.GetSession(pb.GetSessionRequest(session_id=session.session_id)) == revoked
    await fails(
        stub.ValidateSession(pb.ValidateSessionRequest(token=refreshed.token)),
        UNAUTHENTICATED,
        "SESSION_INVALID",
    )


async def test_no_response_and_no_listing_ever_holds_a_secret(stub: SessionServiceStub) -> None:
    created = await create(stub)
    secrets_ = [SESSION_TOKEN.parse(created.token).secret, REFRESH_TOKEN.parse(created.refresh_token).secret]

    responses = [
        await stub.ValidateSession(pb.ValidateSessionRequest(token=created.token)),
        await stub.GetSession(pb.GetSessionRequest(session_id=created.session.session_id)),
        await stub.ListUserSessions(pb.ListUserSessionsRequest(user_id="ada")),
    ]

    for response in responses:
        wire = response.SerializeToString()
        assert not any(secret in wire for secret in secrets_)
        assert created.token[4:79].encode() not in wire


async def test_status_codes_and_reasons(stub: SessionServiceStub) -> None:
    created = await create(stub, scopes=["read"])
    session_id = created.session.session_id

    bad = await fails(create(stub, user_id="no spaces"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_USER_ID")
    assert violated_fields(bad) == ["user_id"]
    bad = await fails(create(stub, idle_ttl=seconds(0)), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert violated_fields(bad) == ["idle_ttl"]
    for invalid in (duration_pb2.Duration(seconds=60, nanos=-1), duration_pb2.Duration(seconds=10**12)):
        bad = await fails(create(stub, max_ttl=invalid), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DURATION")
        assert violated_fields(bad) == ["max_ttl"]
    denied = await fails(
        stub.ValidateSession(pb.ValidateSessionRequest(token=created.token, required_scopes=["admin"])),
        grpc.StatusCode.PERMISSION_DENIED,
        "INSUFFICIENT_SCOPE",
    )
    assert denied["ErrorInfo"].metadata["missing_scopes"] == "admin"  # type: ignore[attr-defined]
    await fails(
        stub.GetSession(pb.GetSessionRequest(session_id="f" * 32)),
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )
    await fails(
        stub.RevokeSession(pb.RevokeSessionRequest(session_id="F" * 32)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await create(stub, request_id="r1")
    await fails(
        create(stub, request_id="r1", scopes=["x"]), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_ALREADY_USED"
    )
    await fails(
        stub.ListUserSessions(pb.ListUserSessionsRequest(user_id="ada", page_token="junk")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    revocation = await stub.RevokeUserSessions(
        pb.RevokeUserSessionsRequest(user_id="ada", except_session_id=session_id)
    )
    assert (revocation.user_id, revocation.except_session_id) == ("ada", session_id)


async def test_a_cached_answer_never_hides_a_revocation(stub: SessionServiceStub) -> None:
    created = await create(stub)
    get = pb.GetSessionRequest(session_id=created.session.session_id)
    validate = pb.ValidateSessionRequest(token=created.token)
    assert (await stub.GetSession(get)).state == pb.SESSION_STATE_ACTIVE
    assert (await stub.ValidateSession(validate)).state == pb.SESSION_STATE_ACTIVE

    await stub.RevokeUserSessions(pb.RevokeUserSessionsRequest(user_id="ada"))  # the session is not rewritten

    revoked = await stub.GetSession(get)
    assert (revoked.state, revoked.revoke_reason) == (pb.SESSION_STATE_REVOKED, pb.REVOKE_REASON_USER_REVOKED)
    await fails(stub.ValidateSession(validate), UNAUTHENTICATED, "SESSION_INVALID")


async def test_a_retried_create_over_grpc_gets_the_same_tokens(stub: SessionServiceStub) -> None:
    first, second = await asyncio.gather(create(stub, request_id="same"), create(stub, request_id="same"))

    assert (first.token, first.refresh_token) == (second.token, second.refresh_token)
    assert first.session == second.session


MALFORMED = [
    "",
    "not a token",
    "mss_" + "0" * 81,  # the right length and alphabet, the wrong checksum
    SESSION_TOKEN.issue("a" * 32, b"\x02" * 32)[:-2] + "zz",
    "Bearer " + SESSION_TOKEN.issue("a" * 32, b"\x02" * 32),
    SESSION_TOKEN.issue("a" * 32, b"\x02" * 32).upper(),
    "x" * 100_000,
]


@pytest.mark.parametrize("token", MALFORMED, ids=range(len(MALFORMED)))
async def test_a_malformed_token_is_refused_before_any_store_read(
    stub: SessionServiceStub, store_calls: CountingStore, token: str
) -> None:
    store_calls.reset()

    await fails(
        stub.ValidateSession(pb.ValidateSessionRequest(token=token)), UNAUTHENTICATED, "SESSION_INVALID"
    )
    await fails(
        stub.RefreshSession(pb.RefreshSessionRequest(refresh_token=token)), UNAUTHENTICATED, "SESSION_INVALID"
    )

    assert store_calls.calls == {}


async def test_a_well_formed_unknown_token_does_reach_the_store(
    stub: SessionServiceStub, store_calls: CountingStore
) -> None:
    """The control for the test above: the counting wrapper sees what does reach the store."""
    store_calls.reset()
    token = SESSION_TOKEN.issue(secrets.token_hex(16), secrets.token_bytes(32))

    await fails(
        stub.ValidateSession(pb.ValidateSessionRequest(token=token)), UNAUTHENTICATED, "SESSION_INVALID"
    )

    assert store_calls.calls == {"batch_get": 1}


async def test_revocations_stream_over_grpc_and_resume(stub: SessionServiceStub) -> None:
    sessions = [await create(stub) for _ in range(3)]
    watch = stub.WatchRevocations(pb.WatchRevocationsRequest())
    await watch.initial_metadata()  # the stream's start is fixed: what follows is seen
    for created in sessions[:2]:
        await stub.RevokeSession(pb.RevokeSessionRequest(session_id=created.session.session_id))
    await stub.RevokeUserSessions(pb.RevokeUserSessionsRequest(user_id="ada"))

    events = [await asyncio.wait_for(watch.read(), 10) for _ in range(3)]
    watch.cancel()

    assert [e.revocation_type for e in events] == [
        pb.REVOCATION_TYPE_SESSION,
        pb.REVOCATION_TYPE_SESSION,
        pb.REVOCATION_TYPE_USER,
    ]
    assert [e.session_id for e in events[:2]] == [s.session.session_id for s in sessions[:2]]
    assert events[0].revoke_reason == pb.REVOKE_REASON_REVOKED and events[2].user_id == "ada"
    resumed = stub.WatchRevocations(pb.WatchRevocationsRequest(resume_token=events[0].resume_token))
    assert [await asyncio.wait_for(resumed.read(), 10) for _ in range(2)] == events[1:]
    resumed.cancel()
    await fails(
        anext(aiter(stub.WatchRevocations(pb.WatchRevocationsRequest(resume_token="junk")))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
