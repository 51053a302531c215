"""A scripted profile servicer: the peer for tests the real server cannot stage on demand.

It answers from a dict with real responses, and can be told to fail a method with a rich status
(built as the real server builds them: google.rpc.Status via grpc_status), to answer slowly, or to break
a watch stream after some events. It counts calls and records their metadata, so tests can see what
actually reached the server.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import itertools

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *details: Message,
    metadata: dict[str, str] | None = None,
    domain: str = "microstate.dev",
) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
    packed = []
    for detail in (info, *details):
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=packed))


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def plain_status(code: grpc.StatusCode, message: str) -> grpc.Status:
    """A status with no rich details at all, as a proxy or an older server might send."""
    return _Status(code, message, ())


class FinishedCall(grpc.RpcError, grpc.Call):
    """A finished call as grpc hands it over, with trailing metadata we choose (for malformed details)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, bytes], ...]) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailing

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def unavailable(message: str = "store down") -> grpc.Status:
    delay = duration_pb2.Duration()
    delay.FromTimedelta(datetime.timedelta(seconds=1.5))
    return rich_status(
        grpc.StatusCode.UNAVAILABLE,
        message,
        "STORE_UNAVAILABLE",
        error_details_pb2.RetryInfo(retry_delay=delay),
    )


def cancelled() -> grpc.Status:
    """What a server shutting down answers a call that no handler took yet (gRPC core's own status)."""
    return plain_status(grpc.StatusCode.CANCELLED, "CANCELLED")


def not_found(user_id: str) -> grpc.Status:
    return rich_status(grpc.StatusCode.NOT_FOUND, f"no profile {user_id!r}", "PROFILE_NOT_FOUND")


class ScriptedProfiles(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self) -> None:
        self.profiles: dict[str, pb.Profile] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.metadata: list[tuple[str, dict[str, str]]] = []
        self.failures: dict[str, collections.deque[grpc.Status]] = collections.defaultdict(collections.deque)
        self.always: dict[str, grpc.Status] = {}
        self.delay: dict[str, float] = {}
        self.headers_first: set[str] = set()
        """Methods that send response headers before anything else, as the real server's writes do."""
        self.events: list[pb.WatchProfilesResponse] = []
        self.watch_tokens: list[str] = []
        self.break_watch_after: collections.deque[int] = collections.deque()
        self.break_watch_with: grpc.Status | None = unavailable("stream broken")
        """How a stream breaks: a status, or None to end it cleanly as a draining server does."""
        self._etags = itertools.count(1)
        self._appended = asyncio.Condition()

    def fail(self, method: str, status: grpc.Status, times: int = 1) -> None:
        """The next `times` calls of `method` fail with `status`."""
        self.failures[method].extend([status] * times)

    def put(self, user_id: str, **fields: object) -> pb.Profile:
        profile = pb.Profile(user_id=user_id, etag=f"e{next(self._etags)}", **fields)  # type: ignore[arg-type]
        self.profiles[user_id] = profile
        return profile

    async def _enter(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[method] += 1
        self.metadata.append((method, {m.key: m.value for m in context.invocation_metadata() or ()}))
        if method in self.headers_first:
            await context.send_initial_metadata(())
        if self.delay.get(method):
            await asyncio.sleep(self.delay[method])  # a slow server, not synchronisation
        status = self.failures[method].popleft() if self.failures[method] else self.always.get(method)
        if status is not None:
            await context.abort_with_status(status)

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        await self._enter("GetProfile", context)
        if request.user_id not in self.profiles:
            await context.abort_with_status(not_found(request.user_id))
        return self.profiles[request.user_id]

    async def BatchGetProfiles(
        self, request: pb.BatchGetProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetProfilesResponse:
        await self._enter("BatchGetProfiles", context)
        ids = list(dict.fromkeys(request.user_ids))
        return pb.BatchGetProfilesResponse(
            profiles=[self.profiles[i] for i in ids if i in self.profiles],
            missing_user_ids=[i for i in ids if i not in self.profiles],
        )

    async def ListProfiles(
        self, request: pb.ListProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProfilesResponse:
        await self._enter("ListProfiles", context)
        ids = sorted(
            i for i in self.profiles if i.startswith(request.user_id_prefix) and i > request.page_token
        )
        page = ids[: request.page_size or 100]
        token = page[-1] if len(ids) > len(page) else ""
        return pb.ListProfilesResponse(profiles=[self.profiles[i] for i in page], next_page_token=token)

    async def CreateProfile(
        self, request: pb.CreateProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        await self._enter("CreateProfile", context)
        return self.put(request.profile.user_id, display_name=request.profile.display_name)

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        await self._enter("UpdateProfile", context)
        return self.put(request.profile.user_id, display_name=request.profile.display_name)

    async def DeleteProfile(
        self, request: pb.DeleteProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteProfileResponse:
        await self._enter("DeleteProfile", context)
        self.profiles.pop(request.user_id, None)
        return pb.DeleteProfileResponse()

    async def append_event(self, user_id: str) -> None:
        """Log a change; open watch streams see it. Resume tokens are positions in the log."""
        profile = self.put(user_id)
        async with self._appended:
            self.events.append(
                pb.WatchProfilesResponse(
                    change_type=pb.CHANGE_TYPE_UPDATED,
                    user_id=user_id,
                    profile=profile,
                    resume_token=str(len(self.events) + 1),
                )
            )
            self._appended.notify_all()

    async def WatchProfiles(self, request: pb.WatchProfilesRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await self._enter("WatchProfiles", context)
        self.watch_tokens.append(request.resume_token)
        position = int(request.resume_token) if request.resume_token else len(self.events)
        budget = self.break_watch_after.popleft() if self.break_watch_after else None
        while True:
            async with self._appended:
                await self._appended.wait_for(lambda start=position: len(self.events) > start)
            while position < len(self.events):
                if budget == 0:
                    if self.break_watch_with is None:
                        return
                    await context.abort_with_status(self.break_watch_with)
                yield self.events[position]
                position += 1
                budget = None if budget is None else budget - 1
