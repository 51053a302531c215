"""The gRPC servicer shared by every profile contract version.

Request and response shapes of v1 and v2 differ only in the Profile message, so
one servicer serves both; a `Codec` per version converts messages <-> ProfileData
and update masks -> patches. No storage calls and no rules here: the domain
owns both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from microstate.server.commit import headers_first
from microstate.server.config import MAX_RESPONSE_BYTES
from microstate.server.errors import stream_errors, unary_errors
from microstate.server.kit import wire
from microstate.server.kit.caches import LatestPerKey
from microstate.server.kit.idempotency import write_request
from microstate.server.profile.domain import Contract, Patch, ProfileChange, ProfileDomain
from microstate.server.profile.model import ProfileData, StoredProfile
from microstate.server.responses import PageEntries, ResponseTooLarge
from microstate.server.store.base import ChangeKind
from microstate.server.streams import IDLE, heartbeat_interval, until_stopping
from microstate.server.wellknown import timestamp

Context: TypeAlias = grpc.aio.ServicerContext
MAX_CACHED_PROFILES = 10_000


@dataclass(frozen=True)
class Codec:
    """What one contract version contributes: its messages and how they map to the stored shape."""

    pb: ModuleType
    """The generated profile_pb2 module of the version."""
    contract: Contract
    to_message: Callable[[StoredProfile], Any]
    from_message: Callable[[Any], ProfileData]
    patch_for: Callable[[Any, Sequence[str]], Patch]

    @property
    def service(self) -> ServiceDescriptor:
        return self.pb.DESCRIPTOR.services_by_name["ProfileService"]  # type: ignore[no-any-return]

    @property
    def service_name(self) -> str:
        return self.service.full_name

    def to_event(self, change: ProfileChange) -> Message:
        event = self.pb.WatchProfilesResponse(
            change_type=self.pb.ChangeType.Value(f"CHANGE_TYPE_{change.kind.name}"),
            user_id=change.key,
            resume_token=change.resume_token,
            commit_time=timestamp(int(change.commit_time * 1e9)),
        )
        if change.stored is not None:
            event.profile.CopyFrom(self.to_message(change.stored))
        return event  # type: ignore[no-any-return]

    def heartbeat(self, resume_token: str) -> Message:
        return self.pb.WatchProfilesResponse(  # type: ignore[no-any-return]
            change_type=self.pb.CHANGE_TYPE_HEARTBEAT,
            resume_token=resume_token,
            commit_time=timestamp(time.time_ns()),
        )


assert {kind.name for kind in ChangeKind} == {"CREATED", "UPDATED", "DELETED"}  # names mirror ChangeType


@dataclass(frozen=True, slots=True)
class SerializedProfile:
    """The Profile message of `stored` as wire bytes, framed as one entry of BatchGetProfilesResponse.profiles
    (a field tag and the length, then the Profile's own bytes)."""

    stored: StoredProfile
    entry: bytes
    header_size: int

    @property
    def profile(self) -> bytes:
        """The Profile's own bytes (a GetProfile response)."""
        return self.entry[self.header_size :]


class ProfileServicer:
    """Implements ProfileService for the contract version `codec` describes."""

    def __init__(self, domain: ProfileDomain, codec: Codec, stopping: asyncio.Event | None = None) -> None:
        self._domain = domain
        self._stopping = stopping
        self._codec = codec
        self._pb = codec.pb
        # The serialized Profile built for the profile object the domain returned last per key: while the
        # domain reuses its decode (the stored bytes did not change) the bytes are reused too, and Get and
        # BatchGet answer with them as they are (see wire.py).
        self._serialized: LatestPerKey[SerializedProfile] = LatestPerKey(MAX_CACHED_PROFILES)
        batch_fields = codec.pb.BatchGetProfilesResponse.DESCRIPTOR.fields_by_name
        self._profiles_field = batch_fields["profiles"].number
        self._missing_field = batch_fields["missing_user_ids"].number
        page_fields = codec.pb.ListProfilesResponse.DESCRIPTOR.fields_by_name
        self._page_field = page_fields["profiles"].number
        self._token_field = page_fields["next_page_token"].number

    def _serialize(self, stored: StoredProfile) -> SerializedProfile:
        hit = self._serialized.get(stored.data.user_id)
        if hit is not None and hit.stored is stored:
            return hit
        profile = self._profile_bytes(stored)
        entry = wire.field(self._profiles_field, profile)
        serialized = SerializedProfile(stored, entry, len(entry) - len(profile))
        self._serialized.put(stored.data.user_id, serialized)
        return serialized

    def _profile_bytes(self, stored: StoredProfile) -> bytes:
        # Deterministic: map entries in key order, so equal profiles always give equal bytes.
        return self._codec.to_message(stored).SerializeToString(deterministic=True)  # type: ignore[no-any-return]

    @unary_errors
    async def GetProfile(self, request: Any, context: Context) -> bytes:
        """A Profile, as wire bytes."""
        return self._serialize(await self._domain.get(request.user_id)).profile

    @unary_errors
    async def BatchGetProfiles(self, request: Any, context: Context) -> bytes:
        """A BatchGetProfilesResponse, as wire bytes: its two repeated fields, in field-number order."""
        found, missing = await self._domain.batch_get(list(request.user_ids))
        profiles = b"".join([self._serialize(stored).entry for stored in found])
        response = profiles + wire.repeated(self._missing_field, [user_id.encode() for user_id in missing])
        if len(response) > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(f"the {len(found)} profiles asked for", len(response))
        return response

    @unary_errors
    async def ListProfiles(self, request: Any, context: Context) -> bytes:
        """A ListProfilesResponse, as wire bytes: as many profiles as fit in a response, then the token."""
        page = PageEntries()
        _, token = await self._domain.list(
            request.user_id_prefix,
            request.page_size,
            request.page_token,
            # Not through the cache of _serialize: a listing would push the hot profiles out of it.
            lambda stored: page.take(wire.field(self._page_field, self._profile_bytes(stored))),
        )
        return page.joined() + (wire.field(self._token_field, token.encode()) if token else b"")

    @unary_errors
    @headers_first
    async def CreateProfile(self, request: Any, context: Context) -> Any:
        data = self._codec.from_message(request.profile)
        created = await self._domain.create(
            data, contract=self._codec.contract, request=write_request(request)
        )
        return self._codec.to_message(created)

    @unary_errors
    @headers_first
    async def UpdateProfile(self, request: Any, context: Context) -> Any:
        patch = self._codec.patch_for(request.profile, list(request.update_mask.paths))
        stored = await self._domain.update(
            request.profile.user_id,
            patch,
            etag=request.profile.etag,
            contract=self._codec.contract,
            request=write_request(request),
        )
        return self._codec.to_message(stored)

    @unary_errors
    @headers_first
    async def DeleteProfile(self, request: Any, context: Context) -> Any:
        await self._domain.delete(request.user_id, etag=request.etag, request=write_request(request))
        return self._pb.DeleteProfileResponse()

    @stream_errors
    async def WatchProfiles(self, request: Any, context: Context) -> AsyncIterator[Any]:
        interval = heartbeat_interval(request)
        start = await self._domain.watch_start(request.resume_token)
        # Response headers go out once the start is fixed: a client that has seen them
        # knows every later write will be streamed.
        await context.send_initial_metadata(())
        changes = self._domain.watch(request.user_id_prefix, start)
        last_token = start
        async for item in until_stopping(changes, self._stopping, idle=interval):
            if item is IDLE:
                yield self._codec.heartbeat(last_token)
            else:
                last_token = item.resume_token
                yield self._codec.to_event(item)
