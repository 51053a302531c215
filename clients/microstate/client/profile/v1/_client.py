"""ProfileClient and SyncProfileClient: the profile v1 contract over the shared client machinery.

Every public method is defined once, in `ProfilePlans`, with its signature and docs: it turns the
arguments into a planned call. The async and sync clients bind those plans (`unary`, `iterator`)
and only perform the I/O, so the twins cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any, ClassVar

from google.protobuf import field_mask_pb2

from microstate.client import _aio, _sync
from microstate.client._base import ClientCore, Contract, Resource
from microstate.client._plans import Pages, Plan, Stream, Unary
from microstate.client._read import BatchRead, Page, Read
from microstate.profile.v1 import profile_pb2, profile_pb2_grpc
from microstate.profile.v1.profile_pb2 import Profile, WatchProfilesResponse

DEFAULT_TARGET = "localhost:50051"
ENV_TARGET = "MICROSTATE_PROFILE_TARGET"

CONTRACT = Contract(
    name="microstate.profile.v1",
    service="microstate.profile.v1.ProfileService",
    idempotent_methods=("GetProfile", "BatchGetProfiles", "ListProfiles", "WatchProfiles"),
    slice_name="profile",
    default_target=DEFAULT_TARGET,
)
PROFILE: Resource[Profile] = Resource(Profile.FromString, attrgetter("etag"), attrgetter("user_id"))

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
"""Per-call metadata, added to the client's (which always carries x-microstate-contract)."""


def _found_and_missing(response: profile_pb2.BatchGetProfilesResponse) -> tuple[list[Profile], list[str]]:
    return list(response.profiles), list(response.missing_user_ids)


def _page(response: profile_pb2.ListProfilesResponse) -> tuple[list[Profile], str]:
    return list(response.profiles), response.next_page_token


class ProfilePlans:
    """The operations of both profile clients. `timeout` is each call's deadline in seconds (None: the
    client's default); `metadata` is added to the client's."""

    def __init__(self, core: ClientCore) -> None:
        self._core = core

    def get(
        self,
        user_id: str,
        *,
        timeout: float | None = None,
        latency_budget: float | None = None,
        metadata: CallMetadata = None,
    ) -> Plan[Read[Profile]]:
        """Read one profile, live, or from its snapshot when the service is unreachable, too slow
        (timeout, or `latency_budget` when a snapshot exists) or its circuit breaker is open.

        Raises NotFound (and drops the snapshot), InvalidArgument, or NoSnapshotError.
        """
        request = profile_pb2.GetProfileRequest(user_id=user_id)
        return self._core.read(
            PROFILE,
            "GetProfile",
            request,
            user_id,
            timeout=timeout,
            latency_budget=latency_budget,
            metadata=self._core.metadata(metadata),
        )

    def batch_get(
        self,
        user_ids: Sequence[str],
        *,
        timeout: float | None = None,
        latency_budget: float | None = None,
        metadata: CallMetadata = None,
    ) -> Plan[BatchRead[Profile]]:
        """Read up to 1,000 profiles in one call (no call for none). When the live call fails, each id is
        served from its snapshot and ids without one are listed in `unavailable`; NoSnapshotError when
        no id has one. The latency budget applies only when every id has a snapshot."""
        request = profile_pb2.BatchGetProfilesRequest(user_ids=user_ids)
        return self._core.batch_read(
            PROFILE,
            "BatchGetProfiles",
            request,
            dict.fromkeys(user_ids),
            _found_and_missing,
            timeout=timeout,
            latency_budget=latency_budget,
            metadata=self._core.metadata(metadata),
        )

    def list(
        self,
        prefix: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[profile_pb2.ListProfilesResponse, Page[Profile]]:
        """One page of profiles in user_id order (page_size 0: the server's default, 100). Always live."""
        request = profile_pb2.ListProfilesRequest(
            user_id_prefix=prefix, page_size=page_size, page_token=page_token
        )
        return self._core.list_page(
            PROFILE, "ListProfiles", request, _page, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def list_all(
        self,
        prefix: str = "",
        *,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Pages[Profile]:
        """Every profile whose user_id starts with `prefix`, fetched page by page; `timeout` is per page."""
        return Pages(
            lambda page_token: self.list(
                prefix, page_size=page_size, page_token=page_token, timeout=timeout, metadata=metadata
            )
        )

    def create(
        self, profile: Profile, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Profile, Profile]:
        """Create a profile; returns it with etag and times set. Raises AlreadyExists, InvalidArgument."""
        request = profile_pb2.CreateProfileRequest(profile=profile)
        return self._core.write(
            "CreateProfile",
            request,
            profile.user_id,
            self._remembered,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    def update(
        self,
        profile: Profile,
        update_mask: Sequence[str] | None = None,
        *,
        etag: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Profile, Profile]:
        """Update the fields named in `update_mask` (None: every writable field). The write is guarded by
        `etag`, else by profile.etag when set ("" forces an unguarded write); a mismatch raises Aborted.
        Raises NotFound, InvalidArgument. `profile` itself is not modified."""
        request = profile_pb2.UpdateProfileRequest(profile=profile)
        if update_mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(update_mask)))
        if etag is not None:
            request.profile.etag = etag  # the request holds a copy
        return self._core.write(
            "UpdateProfile",
            request,
            profile.user_id,
            self._remembered,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    def delete(
        self,
        user_id: str,
        *,
        etag: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[profile_pb2.DeleteProfileResponse, None]:
        """Delete a profile, guarded by `etag` when given. Raises NotFound, Aborted."""
        request = profile_pb2.DeleteProfileRequest(user_id=user_id, etag=etag or "")

        def forget(_: profile_pb2.DeleteProfileResponse) -> None:
            self._core.snapshots.discard(user_id)

        return self._core.write(
            "DeleteProfile", request, user_id, forget, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def watch(
        self,
        prefix: str = "",
        *,
        resume_token: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Stream[WatchProfilesResponse]:
        """Changes in commit order, from just after `resume_token` (None: from now). Reconnects by itself
        after UNAVAILABLE or a server drain and resumes after the last event seen: no gap, no duplicate.
        Events keep snapshots current. `timeout` bounds the whole watch (None: none). Raises
        FailedPrecondition (RESUME_TOKEN_EXPIRED) when the token is older than the server's change log."""

        def request_for(token: str) -> profile_pb2.WatchProfilesRequest:
            return profile_pb2.WatchProfilesRequest(resume_token=token, user_id_prefix=prefix)

        return self._core.watch(
            "WatchProfiles",
            request_for,
            resume_token or "",
            self._observe,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    def _remembered(self, profile: Profile) -> Profile:
        self._core.remember(PROFILE, profile)
        return profile

    def _observe(self, event: WatchProfilesResponse) -> str:
        if event.change_type == profile_pb2.CHANGE_TYPE_DELETED:
            self._core.snapshots.discard(event.user_id)
        elif event.HasField("profile"):
            self._core.remember(PROFILE, event.profile)
        return str(event.resume_token)


class ProfileClient(_aio.AsyncClient):
    """Async client of microstate.profile.v1: `async with ProfileClient("host:port") as profiles:`.

    Reads (`get`, `batch_get`) return `Read` values that say whether they are live or a snapshot, and
    fall back to the snapshot when the service cannot answer in time. Lists and writes are always live.
    Every failure raises a typed `MicrostateError`.
    """

    CONTRACT: ClassVar[Contract] = CONTRACT
    PLANS: ClassVar[Any] = ProfilePlans
    _stub_class = profile_pb2_grpc.ProfileServiceStub

    get = _aio.unary(ProfilePlans.get)
    batch_get = _aio.unary(ProfilePlans.batch_get)
    list = _aio.unary(ProfilePlans.list)
    list_all = _aio.iterator(ProfilePlans.list_all)
    create = _aio.unary(ProfilePlans.create)
    update = _aio.unary(ProfilePlans.update)
    delete = _aio.unary(ProfilePlans.delete)
    watch = _aio.iterator(ProfilePlans.watch)


class SyncProfileClient(_sync.SyncClient):
    """The blocking twin of `ProfileClient`, with the same methods; thread-safe:
    `with SyncProfileClient("host:port") as profiles:`."""

    CONTRACT: ClassVar[Contract] = CONTRACT
    PLANS: ClassVar[Any] = ProfilePlans
    _stub_class = profile_pb2_grpc.ProfileServiceStub

    get = _sync.unary(ProfilePlans.get)
    batch_get = _sync.unary(ProfilePlans.batch_get)
    list = _sync.unary(ProfilePlans.list)
    list_all = _sync.iterator(ProfilePlans.list_all)
    create = _sync.unary(ProfilePlans.create)
    update = _sync.unary(ProfilePlans.update)
    delete = _sync.unary(ProfilePlans.delete)
    watch = _sync.iterator(ProfilePlans.watch)
