"""The profile clients of every contract version, written once.

Every version of the profile contract has the same RPCs, with requests and responses of the same
shapes; only the Profile message differs. So each operation is declared once, in `ProfileOperations`,
over the generated module of a version; the async and sync client bases inherit them (`_operations.py`).
A version's clients are thin subclasses that name the version and its message types, which makes them
precisely typed:

    V2 = ProfileVersion(profile_pb2, profile_pb2_grpc.ProfileServiceStub)

    class ProfileClient(AsyncProfileClient[Profile], version=V2):
        ...
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from google.protobuf import field_mask_pb2

from microstate.client import _aio, _options, _sync
from microstate.client._base import ClientBase, Contract, Message, Resource
from microstate.client._enums import ContractEnum
from microstate.client._operations import iterated, unary
from microstate.client._plans import Pages, Plan, Stream, Unary, every_page
from microstate.client._read import BatchRead, Page, Read
from microstate.client._replica import ReplicaStatus
from microstate.client._watch import ConnectionListener

DEFAULT_TARGET = "localhost:50051"
ENV_TARGET = _options.ENV_TARGET.format(slice="PROFILE")
IDEMPOTENT_METHODS = ("GetProfile", "BatchGetProfiles", "ListProfiles", "WatchProfiles")

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
"""Per-call metadata, added to the client's (which always carries x-microstate-contract)."""

ProfileT = TypeVar("ProfileT", bound=Message)
"""A version's Profile message."""


@dataclass(frozen=True, slots=True)
class ProfileVersion:
    """One version of the profile contract, as its clients need it."""

    messages: ModuleType
    """The version's generated messages (`microstate.profile.vN.profile_pb2`)."""
    stub_class: type[Any]
    """Its generated ProfileService stub."""
    contract: Contract = field(init=False)
    """What its clients are pinned to, read from the messages' descriptor."""

    def __post_init__(self) -> None:
        descriptor = self.messages.DESCRIPTOR
        contract = Contract(
            name=descriptor.package,
            service=descriptor.services_by_name["ProfileService"].full_name,
            idempotent_methods=IDEMPOTENT_METHODS,
            slice_name="profile",
            default_target=DEFAULT_TARGET,
        )
        object.__setattr__(self, "contract", contract)


class ChangeType(ContractEnum):
    """What a watched change did. Its values are the contract's ChangeType numbers, so it equals them
    (`ChangeType.UPDATED == profile_pb2.CHANGE_TYPE_UPDATED`); it prints as its name ("UPDATED")."""

    UNSPECIFIED = 0
    """A change type this client does not know (from a newer server); never sent today."""
    CREATED = 1
    UPDATED = 2
    DELETED = 3
    # The generated enum's names, as aliases, so code written against it keeps working.
    CHANGE_TYPE_UNSPECIFIED = 0
    CHANGE_TYPE_CREATED = 1
    CHANGE_TYPE_UPDATED = 2
    CHANGE_TYPE_DELETED = 3


@dataclass(frozen=True, slots=True)
class ProfileChange(Generic[ProfileT]):
    """One committed change, as `watch` yields it."""

    change_type: ChangeType
    user_id: str
    profile: ProfileT | None
    """The profile after the change; None when it was deleted."""
    resume_token: str
    """Pass to `watch(resume_token=...)` to continue right after this change."""
    commit_time: datetime.datetime
    """When the change was committed (UTC)."""


def _found_and_missing(response: Any) -> tuple[list[Any], list[str]]:
    return list(response.profiles), list(response.missing_user_ids)


def _page(response: Any) -> tuple[list[Any], str]:
    return list(response.profiles), response.next_page_token


class ProfileOperations(ClientBase, Generic[ProfileT]):
    """The operations of every profile client. `timeout` is each call's deadline in seconds (None: the
    client's default); `metadata` is added to the client's.

    A class that names a version (`class ...(AsyncProfileClient[...], version=V1)`) is pinned to it."""

    _pb: ClassVar[ModuleType]
    """The pinned version's generated messages."""
    _resource: ClassVar[Resource[Any]]

    def __init_subclass__(cls, *, version: ProfileVersion | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if version is not None:
            cls.CONTRACT = version.contract
            cls._stub_class = version.stub_class
            cls._pb = version.messages
            cls._resource = Resource(
                version.messages.Profile.FromString, attrgetter("etag"), attrgetter("user_id")
            )

    @unary
    def get(
        self,
        user_id: str,
        *,
        timeout: float | None = None,
        latency_budget: float | None = None,
        metadata: CallMetadata = None,
    ) -> Plan[Read[ProfileT]]:
        """Read one profile, live, or from its snapshot when the service is unreachable, too slow
        (timeout, or `latency_budget` when a snapshot exists) or its circuit breaker is open.

        With `ClientOptions.near_cache`, a profile read before is served from memory (Source.CACHE) while
        the client's watch proves it unchanged (see NearCacheOptions).

        Raises NotFound (and drops the snapshot), InvalidArgument, ContractVersionNotServed, or
        NoSnapshotError.
        """
        self._follow_near_cache()
        return self._core.read(
            self._resource,
            "GetProfile",
            lambda: self._pb.GetProfileRequest(user_id=user_id),
            user_id,
            timeout=timeout,
            latency_budget=latency_budget,
            metadata=self._core.metadata(metadata),
        )

    @unary
    def batch_get(
        self,
        user_ids: Sequence[str],
        *,
        timeout: float | None = None,
        latency_budget: float | None = None,
        metadata: CallMetadata = None,
    ) -> Plan[BatchRead[ProfileT]]:
        """Read up to 1,000 profiles (no call for none). When the live call fails, each id is served from
        its snapshot and ids without one are listed in `unavailable`; NoSnapshotError when no id has one.
        The latency budget applies only when every id has a snapshot. Profiles too large together for
        one response (4 MiB) are read in several calls, one after the other, within `timeout`. With
        `ClientOptions.near_cache`, a batch whose every id is cached is served from memory."""
        self._follow_near_cache()
        return self._core.batch_read(
            self._resource,
            "BatchGetProfiles",
            lambda ids: self._pb.BatchGetProfilesRequest(user_ids=ids),
            user_ids,
            _found_and_missing,
            timeout=timeout,
            latency_budget=latency_budget,
            metadata=self._core.metadata(metadata),
        )

    @unary
    def list(
        self,
        prefix: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Page[ProfileT]]:
        """One page of profiles in user_id order (page_size 0: the server's default, 100). Always live."""
        request = self._pb.ListProfilesRequest(
            user_id_prefix=prefix, page_size=page_size, page_token=page_token
        )
        return self._core.list_page(
            self._resource,
            "ListProfiles",
            request,
            _page,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    @iterated
    def list_all(
        self,
        prefix: str = "",
        *,
        page_size: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Pages[ProfileT]:
        """Every profile whose user_id starts with `prefix`, fetched page by page; `timeout` is per page."""
        return every_page(
            ProfileOperations.list.plan, self, prefix, page_size=page_size, timeout=timeout, metadata=metadata
        )

    @unary
    def create(
        self, profile: ProfileT, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[ProfileT, ProfileT]:
        """Create a profile; returns it with etag and times set. Raises AlreadyExists, InvalidArgument."""
        request = self._pb.CreateProfileRequest(profile=profile)
        return self._core.write(
            "CreateProfile",
            request,
            request.profile.user_id,
            self._remembered,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    @unary
    def update(
        self,
        profile: ProfileT,
        update_mask: Sequence[str] | None = None,
        *,
        etag: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[ProfileT, ProfileT]:
        """Update the fields named in `update_mask` (None: every writable field). The write is guarded by
        `etag`, else by profile.etag when set ("" forces an unguarded write); a mismatch raises Aborted.
        An etag read through any version of the contract guards a write through any other.
        Raises NotFound, InvalidArgument. `profile` itself is not modified."""
        request = self._pb.UpdateProfileRequest(profile=profile)
        if update_mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(update_mask)))
        if etag is not None:
            request.profile.etag = etag  # the request holds a copy
        return self._core.write(
            "UpdateProfile",
            request,
            request.profile.user_id,
            self._remembered,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )

    @unary
    def delete(
        self,
        user_id: str,
        *,
        etag: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, None]:
        """Delete a profile, guarded by `etag` when given. Raises NotFound, Aborted."""
        request = self._pb.DeleteProfileRequest(user_id=user_id, etag=etag or "")

        def forget(_: object) -> None:
            self._core.snapshots.discard(user_id)

        return self._core.write(
            "DeleteProfile", request, user_id, forget, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    @iterated
    def watch(
        self,
        prefix: str = "",
        *,
        resume_token: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Stream[ProfileChange[ProfileT]]:
        """Changes in commit order, from just after `resume_token` (None: from now). Reconnects by itself
        after UNAVAILABLE or a server drain and resumes after the last event seen: no gap, no duplicate.
        Events keep snapshots current. `timeout` bounds the whole watch (None: none). Raises
        FailedPrecondition (RESUME_TOKEN_EXPIRED) when the token is older than the server's change log.
        Resume tokens are the same in every version of the contract."""
        return self._changes(prefix, resume_token or "", timeout, metadata, None)

    @iterated
    def _near_cache_feed(self) -> Stream[ProfileChange[ProfileT]]:
        """The watch behind the near-cache: its key range from now, telling it when streams open and end."""
        near_cache = self._core.near_cache
        assert near_cache is not None
        return self._changes(near_cache.prefix, "", None, None, near_cache.watch_listener)

    def _follow_near_cache(self) -> None:
        if (near_cache := self._core.near_cache) is not None:
            self._keep_following("_near_cache_feed", near_cache.reset)

    def near_cache_status(self) -> ReplicaStatus | None:
        """The near-cache's liveness (LIVE while its watch is connected), age and size; None when
        `ClientOptions.near_cache` is off."""
        near_cache = self._core.near_cache
        return near_cache.status() if near_cache is not None else None

    def _changes(
        self,
        prefix: str,
        resume_token: str,
        timeout: float | None,
        metadata: CallMetadata,
        listener: ConnectionListener | None,
    ) -> Stream[ProfileChange[ProfileT]]:
        def request_for(token: str) -> object:
            return self._pb.WatchProfilesRequest(resume_token=token, user_id_prefix=prefix)

        return self._core.watch(
            "WatchProfiles",
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
        """Fail now, rather than at the first real call, if the server does not serve this client's
        contract version: raises ContractVersionNotServed naming the pinned and the served versions
        (or Unavailable, ... when the server cannot be asked). Call it once after connecting; it costs one
        GetProfile of an empty user_id, which the server refuses without reading its store."""
        request = self._pb.GetProfileRequest(user_id="")
        return self._core.check_contract(
            "GetProfile", request, timeout=timeout, metadata=self._core.metadata(metadata)
        )

    def _remembered(self, profile: ProfileT) -> ProfileT:
        self._core.remember(self._resource, profile)
        return profile

    def _observe(self, event: Any) -> ProfileChange[ProfileT]:
        if (near_cache := self._core.near_cache) is not None:
            near_cache.invalidate(event.user_id)
        change_type = ChangeType.of(event.change_type)
        profile = event.profile if event.HasField("profile") else None
        if change_type is ChangeType.DELETED:
            self._core.snapshots.discard(event.user_id)
        elif profile is not None:
            self._core.remember(self._resource, profile)
        commit_time = event.commit_time.ToDatetime(tzinfo=datetime.UTC)
        return ProfileChange(change_type, event.user_id, profile, event.resume_token, commit_time)


class AsyncProfileClient(_aio.AsyncClient, ProfileOperations[ProfileT]):
    """Async client of one profile contract version: `async with ProfileClient("host:port") as profiles:`.

    Reads (`get`, `batch_get`) return `Read` values that say whether they are live or a snapshot, and
    fall back to the snapshot when the service cannot answer in time. Lists and writes are always live.
    Every failure raises a typed `MicrostateError`; a server that does not serve the pinned version
    raises `ContractVersionNotServed` at the first call (or at `await check_contract()`).
    """


class SyncProfileClient(_sync.SyncClient, ProfileOperations[ProfileT]):
    """The blocking twin of `AsyncProfileClient`, with the same methods; thread-safe:
    `with SyncProfileClient("host:port") as profiles:`."""
