"""SessionClient and SyncSessionClient of the microstate.session.v1 contract, from one declaration.

`SessionOperations` declares every operation once; both twins inherit it (`_operations.py`). The
revocation watch behind `validate(..., accept_cached_for=N)` runs in the background (`_keep_following`): an
asyncio task for the async client, a daemon thread for the sync one, started on the first such call and
ended by close().
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

from google.protobuf import duration_pb2

from microstate.client import _aio, _options, _sync
from microstate.client._base import ClientBase, Contract, Resource
from microstate.client._enums import ContractEnum
from microstate.client._operations import iterated, unary
from microstate.client._plans import Answered, Pages, Plan, Stream, Unary, every_page
from microstate.client._read import Page, Read
from microstate.client.session._cache import ValidationCache, check_accept_cached_for, token_key
from microstate.session.v1 import session_pb2 as pb
from microstate.session.v1 import session_pb2_grpc
from microstate.session.v1.session_pb2 import Session

DEFAULT_TARGET = "localhost:50052"
"""Where `microstate serve session` listens by default."""
ENV_TARGET = _options.ENV_TARGET.format(slice="SESSION")

CONTRACT = Contract(
    name=pb.DESCRIPTOR.package,
    service=pb.DESCRIPTOR.services_by_name["SessionService"].full_name,
    # The reads and the watch, and the writes that apply once however often they are sent: a create
    # always carries a request_id, a refresh token presented again within 30 s gets the same successor,
    # and revoking a revoked session changes nothing.
    idempotent_methods=(
        "ValidateSession",
        "GetSession",
        "ListUserSessions",
        "WatchRevocations",
        "CreateSession",
        "RefreshSession",
        "RevokeSession",
    ),
    slice_name="session",
    default_target=DEFAULT_TARGET,
    snapshots=False,  # a session check never passes on an old answer, unless the caller opts in per call
)

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
"""Per-call metadata, added to the client's (which always carries x-microstate-contract)."""
Seconds = float | datetime.timedelta
O = TypeVar("O")  # noqa: E741 - what a write's answer becomes

_RESOURCE = Resource(Session.FromString, lambda _: "", attrgetter("session_id"))


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A session and its credentials, as CreateSession and RefreshSession return them: the only time the
    tokens are ever given out. Their repr leaves the tokens out, so logging one leaks nothing."""

    session: Session
    token: str = field(repr=False)
    """The session token ("mss_..."), for `validate`. Keep it secret."""
    refresh_token: str = field(repr=False)
    """The refresh token ("msr_..."), for `refresh`. Keep it secret."""


class RevocationType(ContractEnum):
    """What a revocation event reports; its values are the contract's RevocationType numbers."""

    UNSPECIFIED = 0
    """A type this client does not know (from a newer server)."""
    SESSION = 1
    """One session was revoked."""
    USER = 2
    """Every session of a user created up to revoke_time was revoked, except except_session_id."""
    CHECKPOINT = 3
    """Nothing was revoked; the watch moved on (keep its resume_token)."""


@dataclass(frozen=True, slots=True)
class Revocation:
    """One event of `watch_revocations`."""

    revocation_type: RevocationType
    session_id: str
    """The session revoked (SESSION)."""
    user_id: str
    revoke_time: datetime.datetime | None
    """When the revocation took effect (UTC); None for a CHECKPOINT."""
    revoke_reason: int
    """A microstate.session.v1.RevokeReason (SESSION)."""
    except_session_id: str
    """The session spared (USER); may be empty."""
    resume_token: str
    """Pass to `watch_revocations(resume_token=...)` to continue right after this event."""
    commit_time: datetime.datetime


def _duration(seconds: Seconds) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    if isinstance(seconds, datetime.timedelta):
        duration.FromTimedelta(seconds)
    else:
        duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _issued(response: Any) -> IssuedSession:
    return IssuedSession(response.session, response.token, response.refresh_token)


def _page(response: pb.ListUserSessionsResponse) -> tuple[list[Session], str]:
    return list(response.sessions), response.next_page_token


class SessionOperations(ClientBase):
    """The operations of both session clients. `timeout` is each call's deadline in seconds (None: the
    client's default); `metadata` is added to the client's. Every failure raises a typed MicrostateError.
    Nothing is ever served from a snapshot: reads fail closed unless a `validate` call opts in to the
    cache."""

    CONTRACT = CONTRACT
    _stub_class = session_pb2_grpc.SessionServiceStub
    _cache: ValidationCache

    def __init__(self, target: str | None = None, *, options: _options.ClientOptions | None = None) -> None:
        super().__init__(target, options=options)
        self._cache = ValidationCache()

    def _follow_revocations(self) -> None:
        """Start the revocation watch that keeps the validation cache honest, unless it runs."""
        self._keep_following("_cache_feed", self._cache.reset)

    def _write(
        self,
        method: str,
        request: object,
        on_success: Callable[[Any], O],
        timeout: float | None,
        metadata: CallMetadata,
        *,
        resend: bool = True,
    ) -> Unary[Any, O]:
        """A write, resent once if its answer is lost unless `resend` is False (see ClientCore.write).
        Sessions keep no snapshots, so the write names no snapshot key."""
        return self._core.write(
            method,
            request,
            "",
            on_success,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
            resend_if_lost=resend,
        )

    @unary
    def create(
        self,
        user_id: str,
        *,
        idle_ttl: Seconds | None = None,
        max_ttl: Seconds | None = None,
        scopes: Sequence[str] = (),
        attributes: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, IssuedSession]:
        """Create a session; returns it with its token and refresh token (given out by this call only).

        `idle_ttl` (sliding: each refresh moves the end to now + idle_ttl) and `max_ttl` (absolute, from
        creation) are seconds or timedeltas; None: the server's defaults (30 minutes, 24 hours).
        `request_id` makes a retry return the same session and tokens (AIP-155, for 10 minutes); None: the
        client makes one (a UUID), so that its own resending of a create whose answer was lost creates one
        session. Raises InvalidArgument, AlreadyExists (REQUEST_ID_ALREADY_USED)."""
        request = pb.CreateSessionRequest(
            user_id=user_id,
            scopes=scopes,
            attributes=attributes or {},
            request_id=request_id if request_id is not None else str(uuid.uuid4()),
        )
        if idle_ttl is not None:
            request.idle_ttl.CopyFrom(_duration(idle_ttl))
        if max_ttl is not None:
            request.max_ttl.CopyFrom(_duration(max_ttl))
        return self._write("CreateSession", request, _issued, timeout, metadata)

    @unary
    def validate(
        self,
        token: str,
        required_scopes: Sequence[str] = (),
        *,
        accept_cached_for: float | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Plan[Read[Session]]:
        """The active session of `token`, which has every scope in `required_scopes`.

        Fails closed: a token that is not that of an active session raises Unauthenticated
        (SESSION_INVALID, whatever the cause), a missing scope PermissionDenied (INSUFFICIENT_SCOPE), and
        a server that cannot answer Unavailable / DeadlineExceeded / CircuitOpenError; never an old answer.

        `accept_cached_for=N` (0 < N <= 30 seconds) opts in to a cache of positive answers: one given at
        most N seconds ago for the same token is served without a call (`read.source` is Source.CACHE,
        `read.age` says how old), up or down as the server may be. An answer is cached only while the
        client's revocation watch (started by the first such call, ended by close()) covers it, never past
        its session's expire_time, and is dropped once a revocation of its session or its user arrives.
        Negative answers are never cached. Keys are SHA-256 digests of the tokens; nothing goes to disk."""
        if accept_cached_for is not None:
            check_accept_cached_for(accept_cached_for)
            key = token_key(token)
            cached = self._cache.get(key, accept_cached_for, required_scopes)
            if cached is not None:
                return Answered(cached)
        request = pb.ValidateSessionRequest(token=token, required_scopes=required_scopes)
        live = self._core.read_live(
            _RESOURCE, "ValidateSession", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )
        if accept_cached_for is None:
            return live
        self._follow_revocations()
        generation, started = self._cache.generation, time.monotonic()

        def keep(session: Session) -> Read[Session]:
            read = live.on_response(session)
            self._cache.put(key, read, generation, started)
            return read

        return dataclasses.replace(live, on_response=keep)

    @unary
    def refresh(
        self, refresh_token: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, IssuedSession]:
        """Rotate the session's credentials: a new token and refresh token, and the idle deadline moved to
        now + idle_ttl (never past the max_ttl cap). The refresh token presented is spent; presenting it
        again within 30 s returns the same successor (so concurrent refreshes agree, and a refresh whose
        answer was lost is sent again by the client), later revokes the session. The replaced token still
        validates for 30 s. Raises Unauthenticated (SESSION_INVALID), FailedPrecondition
        (TOO_MUCH_CONTENTION: retry)."""
        request = pb.RefreshSessionRequest(refresh_token=refresh_token)
        return self._write("RefreshSession", request, _issued, timeout, metadata)

    @unary
    def revoke(
        self, session_id: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Session]:
        """Revoke one session; returns it, REVOKED (revoking it again changes nothing). This client's
        cached validations of it go at once, every other client's when its revocation watch hears of it.
        Raises NotFound (no such session, or it expired), InvalidArgument."""

        def revoked(session: Session) -> Session:
            self._cache.revoke_session(session_id)
            return session

        request = pb.RevokeSessionRequest(session_id=session_id)
        return self._write("RevokeSession", request, revoked, timeout, metadata)

    @unary
    def revoke_user(
        self,
        user_id: str,
        except_session_id: str = "",
        *,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, pb.RevokeUserSessionsResponse]:
        """Revoke every session of `user_id` created up to now, but `except_session_id` if it is an active
        session of theirs ("sign out everywhere else"); one store write whatever their number. Returns the
        revocation's time and the session spared. Raises InvalidArgument, FailedPrecondition
        (TOO_MUCH_CONTENTION: retry)."""

        def revoked(response: pb.RevokeUserSessionsResponse) -> pb.RevokeUserSessionsResponse:
            self._cache.revoke_user(user_id, response.except_session_id)
            return response

        request = pb.RevokeUserSessionsRequest(user_id=user_id, except_session_id=except_session_id)
        # Not resent: a second call would revoke the sessions made in between too.
        return self._write("RevokeUserSessions", request, revoked, timeout, metadata, resend=False)

    @unary
    def get(
        self, session_id: str, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, Read[Session]]:
        """One session, active or revoked (never its tokens); always live, failing closed. Raises NotFound
        (no such session, or it expired), InvalidArgument."""
        request = pb.GetSessionRequest(session_id=session_id)
        return self._core.read_live(
            _RESOURCE, "GetSession", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @unary
    def list_user(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[Session]]:
        """One page of the user's active sessions in session_id order (page_size 0: 100). A page may hold
        fewer, even none, while next_page_token is set. Always live."""
        request = pb.ListUserSessionsRequest(user_id=user_id, page_size=page_size, page_token=page_token)
        return self._core.list_page(
            _RESOURCE,
            "ListUserSessions",
            request,
            _page,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    @iterated
    def list_user_all(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Pages[Session]:
        """Every active session of the user, fetched page by page; `timeout` is per page."""
        list_page = SessionOperations.list_user.plan
        return every_page(list_page, self, user_id, page_size=page_size, timeout=timeout, metadata=metadata)

    @iterated
    def watch_revocations(
        self,
        resume_token: str | None = None,
        *,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Stream[Revocation]:
        """Revocations in commit order, from just after `resume_token` (None: from now). Reconnects by
        itself after UNAVAILABLE or a server drain and resumes after the last event seen: no gap, no
        duplicate. `timeout` bounds the whole watch (None: none). Raises FailedPrecondition
        (RESUME_TOKEN_EXPIRED) when the token is older than the server's change log: drop what was cached
        from revocable state, then watch from now."""
        return self._revocations(resume_token or "", timeout, metadata, None)

    @iterated
    def _cache_feed(self) -> Stream[Revocation]:
        """The watch behind the validation cache: from now, telling the cache when streams open and end."""
        return self._revocations("", None, None, self._cache.watch_state)

    def _revocations(
        self, resume_token: str, timeout: float | None, metadata: CallMetadata, listener: Any
    ) -> Stream[Revocation]:
        def request_for(token: str) -> pb.WatchRevocationsRequest:
            return pb.WatchRevocationsRequest(resume_token=token)

        return self._core.watch(
            "WatchRevocations",
            request_for,
            resume_token,
            self._observe,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
            listener=listener,
        )

    @unary
    def check_contract(
        self, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, None]:
        """Fail now, rather than at the first real call, if the server does not serve microstate.session.v1
        (ContractVersionNotServed, or Unavailable, ... when it cannot be asked). Costs one GetSession of an
        empty session_id, which the server refuses without reading its store."""
        request = pb.GetSessionRequest(session_id="")
        return self._core.check_contract(
            "GetSession", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def _observe(self, event: pb.WatchRevocationsResponse) -> Revocation:
        kind = RevocationType.of(event.revocation_type)
        if kind is RevocationType.SESSION:
            self._cache.revoke_session(event.session_id)
        elif kind is RevocationType.USER:
            self._cache.revoke_user(event.user_id, event.except_session_id)
        revoke_time = (
            event.revoke_time.ToDatetime(tzinfo=datetime.UTC) if event.HasField("revoke_time") else None
        )
        return Revocation(
            kind,
            event.session_id,
            event.user_id,
            revoke_time,
            event.revoke_reason,
            event.except_session_id,
            event.resume_token,
            event.commit_time.ToDatetime(tzinfo=datetime.UTC),
        )


class SessionClient(_aio.AsyncClient, SessionOperations):
    """Async client of microstate.session.v1: `async with SessionClient("host:port") as sessions:`.

    Reads fail closed; `validate(..., accept_cached_for=N)` opts in, per call, to a cache kept honest by
    a revocation watch that runs as an asyncio task on the loop of the first such call until close()."""


class SyncSessionClient(_sync.SyncClient, SessionOperations):
    """The blocking twin of `SessionClient`, with the same methods; thread-safe:
    `with SyncSessionClient("host:port") as sessions:`. Its revocation watch runs in a daemon thread."""
