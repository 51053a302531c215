"""gRPC adapter for microstate.profile.v1: messages <-> ProfileData, nothing else.

No storage calls and no rules here: the domain owns both, so a later v2 adapter
shares them.
"""

from __future__ import annotations

import array
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import grpc
from google.protobuf import timestamp_pb2

from microstate.profile.v1 import profile_pb2 as pb
from microstate.profile.v1 import profile_pb2_grpc
from microstate.server.errors import InvalidArgument, stream_errors, unary_errors
from microstate.server.profile.domain import Patch, ProfileChange, ProfileDomain
from microstate.server.profile.model import ProfileData, StoredProfile
from microstate.server.store.base import ChangeKind

CONTRACT = "microstate.profile.v1"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProfileService"].full_name

_WRITABLE = ("display_name", "locale", "attributes", "embedding")
_CHANGE_TYPES = {
    ChangeKind.CREATED: pb.CHANGE_TYPE_CREATED,
    ChangeKind.UPDATED: pb.CHANGE_TYPE_UPDATED,
    ChangeKind.DELETED: pb.CHANGE_TYPE_DELETED,
}


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


def to_message(stored: StoredProfile) -> pb.Profile:
    data = stored.data
    return pb.Profile(
        user_id=data.user_id,
        display_name=data.display_name,
        locale=data.locale,
        attributes=data.attributes,
        embedding=data.embedding,
        etag=stored.etag,
        create_time=_timestamp(data.create_time_ns),
        update_time=_timestamp(data.update_time_ns),
    )


def from_message(message: pb.Profile) -> ProfileData:
    return ProfileData(
        user_id=message.user_id,
        display_name=message.display_name,
        locale=message.locale,
        attributes=dict(message.attributes),
        embedding=array.array("f", message.embedding),
    )


def patch_for(message: pb.Profile, paths: Sequence[str]) -> Patch:
    """The domain patch an AIP-134 update_mask describes; unknown paths are INVALID_ARGUMENT."""
    fields: set[str] = set()
    attribute_keys: set[str] = set()
    for path in paths or ["*"]:
        if path == "*":
            fields.update(_WRITABLE)
        elif path in _WRITABLE:
            fields.add(path)
        elif path.startswith("attributes.") and len(path) > len("attributes."):
            attribute_keys.add(path.removeprefix("attributes."))
        else:
            raise InvalidArgument(
                "update_mask",
                f"unknown or read-only path {path!r}; updatable: {', '.join(_WRITABLE)}, attributes.<key>",
                reason="INVALID_UPDATE_MASK",
            )
    new = from_message(message)

    def apply(current: ProfileData) -> ProfileData:
        updated = replace(current, **{name: getattr(new, name) for name in fields})
        if attribute_keys:
            attributes = dict(updated.attributes)
            for key in attribute_keys:
                if key in message.attributes:
                    attributes[key] = message.attributes[key]
                else:
                    attributes.pop(key, None)
            updated = replace(updated, attributes=attributes)
        return updated

    return apply


def to_event(change: ProfileChange) -> pb.WatchProfilesResponse:
    event = pb.WatchProfilesResponse(
        change_type=_CHANGE_TYPES[change.kind],
        user_id=change.user_id,
        resume_token=change.resume_token,
        commit_time=_timestamp(int(change.commit_time * 1e9)),
    )
    if change.profile is not None:
        event.profile.CopyFrom(to_message(change.profile))
    return event


class ProfileServiceV1(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, domain: ProfileDomain) -> None:
        self._domain = domain

    @unary_errors
    async def GetProfile(
        self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        return to_message(await self._domain.get(request.user_id))

    @unary_errors
    async def BatchGetProfiles(
        self, request: pb.BatchGetProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetProfilesResponse:
        found, missing = await self._domain.batch_get(request.user_ids)
        return pb.BatchGetProfilesResponse(profiles=[to_message(p) for p in found], missing_user_ids=missing)

    @unary_errors
    async def ListProfiles(
        self, request: pb.ListProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProfilesResponse:
        profiles, token = await self._domain.list(
            request.user_id_prefix, request.page_size, request.page_token
        )
        return pb.ListProfilesResponse(profiles=[to_message(p) for p in profiles], next_page_token=token)

    @unary_errors
    async def CreateProfile(
        self, request: pb.CreateProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        return to_message(await self._domain.create(from_message(request.profile), written_by=CONTRACT))

    @unary_errors
    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.Profile:
        patch = patch_for(request.profile, list(request.update_mask.paths))
        stored = await self._domain.update(
            request.profile.user_id, patch, etag=request.profile.etag, written_by=CONTRACT
        )
        return to_message(stored)

    @unary_errors
    async def DeleteProfile(
        self, request: pb.DeleteProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteProfileResponse:
        await self._domain.delete(request.user_id, etag=request.etag)
        return pb.DeleteProfileResponse()

    @stream_errors
    async def WatchProfiles(
        self, request: pb.WatchProfilesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchProfilesResponse]:
        start = await self._domain.watch_start(request.resume_token)
        # Response headers go out once the start is fixed: a client that has seen them
        # knows every later write will be streamed.
        await context.send_initial_metadata(())
        async for change in self._domain.watch(request.user_id_prefix, start):
            yield to_event(change)
