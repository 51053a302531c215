"""The gRPC servicer of microstate.session.v1: messages <-> domain values, nothing else.

No storage calls and no rules here: the domain owns both; errors become statuses in the shared decorators.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias, TypeVar, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.server.commit import headers_first
from microstate.server.errors import stream_errors, unary_errors
from microstate.server.kit.caches import LatestPerKey
from microstate.server.session.domain import (
    Issued,
    NewSession,
    Revocation,
    RevocationType,
    SessionDomain,
    SessionView,
)
from microstate.server.session.model import RevokeReason
from microstate.server.streams import until_stopping
from microstate.server.wellknown import duration, duration_ns, timestamp
from microstate.session.v1 import session_pb2 as pb

Context: TypeAlias = grpc.aio.ServicerContext
MAX_CACHED_SESSIONS = 10_000
IssuedResponse = TypeVar("IssuedResponse", pb.CreateSessionResponse, pb.RefreshSessionResponse)
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["SessionService"]


# The domain's enums by proto name, so a renamed or missing value fails at import, not at the first call.
_REASONS = {
    reason: cast(pb.RevokeReason, pb.RevokeReason.Value(f"REVOKE_REASON_{reason.name}"))
    for reason in RevokeReason
}
_TYPES = {
    kind: cast(pb.RevocationType, pb.RevocationType.Value(f"REVOCATION_TYPE_{kind.name}"))
    for kind in RevocationType
}


def _nanoseconds(request: pb.CreateSessionRequest, field: str) -> int | None:
    """A Duration field in nanoseconds; None when absent (the default applies)."""
    if not request.HasField(field):
        return None
    return duration_ns(getattr(request, field), field)


def to_message(view: SessionView) -> pb.Session:
    data = view.data
    session = pb.Session(
        session_id=data.session_id,
        user_id=data.user_id,
        scopes=data.scopes,
        attributes=data.attributes,
        state=pb.SESSION_STATE_ACTIVE if view.active else pb.SESSION_STATE_REVOKED,
        create_time=timestamp(data.create_time_ns),
        refresh_time=timestamp(data.refresh_time_ns),
        expire_time=timestamp(data.expire_time_ns),
        max_expire_time=timestamp(data.max_expire_time_ns),
        idle_ttl=duration(data.idle_ttl_ns),
        max_ttl=duration(data.max_ttl_ns),
        revoke_reason=_REASONS[view.revoke_reason],
        refresh_count=data.generation,
    )
    if not view.active:
        session.revoke_time.CopyFrom(timestamp(view.revoke_time_ns))
    return session


def to_event(revocation: Revocation) -> pb.WatchRevocationsResponse:
    event = pb.WatchRevocationsResponse(
        revocation_type=_TYPES[revocation.type],
        session_id=revocation.session_id,
        user_id=revocation.user_id,
        revoke_reason=_REASONS[revocation.revoke_reason],
        except_session_id=revocation.except_session_id,
        resume_token=revocation.resume_token,
        commit_time=timestamp(int(revocation.commit_time * 1e9)),
    )
    if revocation.revoke_time_ns:
        event.revoke_time.CopyFrom(timestamp(revocation.revoke_time_ns))
    return event


class SessionServicer:
    """Implements SessionService over one SessionDomain."""

    def __init__(self, domain: SessionDomain, stopping: asyncio.Event | None = None) -> None:
        self._domain = domain
        self._stopping = stopping
        # The Session last serialized per session id, reused while the domain hands out the same decoded
        # session in the same state, so a hot ValidateSession answers with ready bytes (kit/wire.py).
        self._serialized: LatestPerKey[tuple[SessionView, bytes]] = LatestPerKey(MAX_CACHED_SESSIONS)

    def _session_bytes(self, view: SessionView) -> bytes:
        hit = self._serialized.get(view.data.session_id)
        if hit is not None and hit[0].data is view.data and hit[0] == view:
            return hit[1]
        serialized = to_message(view).SerializeToString(deterministic=True)
        self._serialized.put(view.data.session_id, (view, serialized))
        return serialized

    @staticmethod
    def _issued(issued: Issued, response: type[IssuedResponse]) -> IssuedResponse:
        session = to_message(issued.session)
        return response(session=session, token=issued.token, refresh_token=issued.refresh_token)

    @unary_errors
    @headers_first
    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Context
    ) -> pb.CreateSessionResponse:
        new = NewSession(
            user_id=request.user_id,
            scopes=list(request.scopes),
            attributes=dict(request.attributes),
            idle_ttl_ns=_nanoseconds(request, "idle_ttl"),
            max_ttl_ns=_nanoseconds(request, "max_ttl"),
            request_id=request.request_id,
        )
        return self._issued(await self._domain.create(new), pb.CreateSessionResponse)

    @unary_errors
    async def ValidateSession(self, request: pb.ValidateSessionRequest, context: Context) -> bytes:
        """A Session, as wire bytes."""
        return self._session_bytes(await self._domain.validate(request.token, request.required_scopes))

    @unary_errors
    @headers_first
    async def RefreshSession(
        self, request: pb.RefreshSessionRequest, context: Context
    ) -> pb.RefreshSessionResponse:
        return self._issued(await self._domain.refresh(request.refresh_token), pb.RefreshSessionResponse)

    @unary_errors
    @headers_first
    async def RevokeSession(self, request: pb.RevokeSessionRequest, context: Context) -> pb.Session:
        return to_message(await self._domain.revoke(request.session_id))

    @unary_errors
    @headers_first
    async def RevokeUserSessions(
        self, request: pb.RevokeUserSessionsRequest, context: Context
    ) -> pb.RevokeUserSessionsResponse:
        revocation = await self._domain.revoke_user(request.user_id, request.except_session_id)
        return pb.RevokeUserSessionsResponse(
            user_id=revocation.user_id,
            revoke_time=timestamp(revocation.revoke_time_ns),
            except_session_id=revocation.except_session_id,
        )

    @unary_errors
    async def GetSession(self, request: pb.GetSessionRequest, context: Context) -> bytes:
        """A Session, as wire bytes."""
        return self._session_bytes(await self._domain.get(request.session_id))

    @unary_errors
    async def ListUserSessions(
        self, request: pb.ListUserSessionsRequest, context: Context
    ) -> pb.ListUserSessionsResponse:
        found, token = await self._domain.list_user(request.user_id, request.page_size, request.page_token)
        sessions = [to_message(view) for view in found]
        return pb.ListUserSessionsResponse(sessions=sessions, next_page_token=token)

    @stream_errors
    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        start = await self._domain.watch_start(request.resume_token)
        # Response headers go out once the start is fixed: a client that has seen them knows every later
        # revocation will be streamed.
        await context.send_initial_metadata(())
        async for revocation in until_stopping(self._domain.watch(start), self._stopping):
            yield to_event(revocation)
