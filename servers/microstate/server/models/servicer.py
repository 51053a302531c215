"""The gRPC servicer of microstate.models.v1: messages <-> domain values, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.models.v1 import models_pb2 as pb
from microstate.server.commit import headers_first
from microstate.server.errors import InvalidArgument, stream_errors, unary_errors
from microstate.server.kit import wire
from microstate.server.kit.resources import Stored
from microstate.server.models.domain import Event, ModelsDomain
from microstate.server.models.model import AliasData, ModelData, UploadData, VersionData
from microstate.server.streams import until_stopping
from microstate.server.wellknown import timestamp

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["ModelService"]
_DATA_FIELD = pb.ReadBlobResponse.DESCRIPTOR.fields_by_name["data"].number

_EVENT_TYPES = {
    "version": pb.EVENT_TYPE_VERSION_CREATED,
    "alias": pb.EVENT_TYPE_ALIAS_MOVED,
    "alias_deleted": pb.EVENT_TYPE_ALIAS_DELETED,
    "checkpoint": pb.EVENT_TYPE_CHECKPOINT,
}


def to_model(stored: Stored[ModelData]) -> pb.Model:
    data = stored.data
    return pb.Model(
        model_id=data.model_id,
        description=data.description,
        labels=data.labels,
        latest_version=data.latest_version,
        create_time=timestamp(data.create_time_ns),
        update_time=timestamp(data.update_time_ns),
        etag=stored.etag,
    )


def to_version(stored: Stored[VersionData]) -> pb.Version:
    data = stored.data
    return pb.Version(
        model_id=data.model_id,
        version=data.version,
        digest=data.digest,
        size_bytes=data.size_bytes,
        media_type=data.media_type,
        metadata=data.metadata,
        create_time=timestamp(data.create_time_ns),
        state=pb.VERSION_STATE_READY,
        upload_id=data.upload_id,
    )


def to_alias(stored: Stored[AliasData], *, history: bool = True) -> pb.Alias:
    data = stored.data
    alias = pb.Alias(
        model_id=data.model_id,
        alias=data.alias,
        version=data.version,
        update_time=timestamp(data.update_time_ns),
        etag=stored.etag,
    )
    if history:
        alias.history.extend(
            pb.AliasMove(
                from_version=m.from_version, to_version=m.to_version, move_time=timestamp(m.move_time_ns)
            )
            for m in data.history
        )
    return alias


def to_event(event: Event) -> pb.WatchModelsResponse:
    response = pb.WatchModelsResponse(
        event_type=_EVENT_TYPES[event.kind],
        resume_token=event.resume_token,
        commit_time=timestamp(int(event.commit_time * 1e9)),
    )
    if event.version is not None:
        response.version.CopyFrom(to_version(event.version))
    if event.alias is not None:
        response.alias.CopyFrom(to_alias(event.alias, history=False))
    elif event.kind == "alias_deleted":
        response.alias.CopyFrom(pb.Alias(model_id=event.model_id, alias=event.alias_name))
    return response


async def _chunks(requests: AsyncIterator[pb.UploadRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if request.WhichOneof("part") != "chunk":
            raise InvalidArgument("header", "only chunks may follow the header")
        yield request.chunk.data


class ModelServicer:
    """Implements ModelService over one ModelsDomain."""

    def __init__(self, domain: ModelsDomain, stopping: asyncio.Event | None = None) -> None:
        self._domain = domain
        self._stopping = stopping

    @unary_errors
    @headers_first
    async def CreateModel(self, request: pb.CreateModelRequest, context: Context) -> pb.Model:
        return to_model(
            await self._domain.create_model(request.model_id, request.description, request.labels)
        )

    @unary_errors
    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.Model:
        return to_model(await self._domain.get_model(request.model_id))

    @unary_errors
    @headers_first
    async def UpdateModel(self, request: pb.UpdateModelRequest, context: Context) -> pb.Model:
        updated = await self._domain.update_model(
            request.model_id, request.description, request.labels, request.etag
        )
        return to_model(updated)

    @unary_errors
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        found, token = await self._domain.list_models(request.page_size, request.page_token)
        return pb.ListModelsResponse(models=[to_model(m) for m in found], next_page_token=token)

    @unary_errors
    async def GetVersion(self, request: pb.GetVersionRequest, context: Context) -> pb.Version:
        return to_version(await self._domain.get_version(request.model_id, request.version))

    @unary_errors
    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: Context
    ) -> pb.ListVersionsResponse:
        found, token = await self._domain.list_versions(
            request.model_id, request.page_size, request.page_token
        )
        return pb.ListVersionsResponse(versions=[to_version(v) for v in found], next_page_token=token)

    @unary_errors
    async def ResolveRef(self, request: pb.ResolveRefRequest, context: Context) -> pb.Version:
        return to_version(await self._domain.resolve(request.ref))

    @unary_errors
    @headers_first
    async def SetAlias(self, request: pb.SetAliasRequest, context: Context) -> pb.Alias:
        moved = await self._domain.set_alias(request.model_id, request.alias, request.version, request.etag)
        return to_alias(moved)

    @unary_errors
    async def GetAlias(self, request: pb.GetAliasRequest, context: Context) -> pb.Alias:
        return to_alias(await self._domain.get_alias(request.model_id, request.alias))

    @unary_errors
    @headers_first
    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Context) -> pb.DeleteAliasResponse:
        await self._domain.delete_alias(request.model_id, request.alias, request.etag)
        return pb.DeleteAliasResponse()

    @unary_errors
    async def ListAliases(self, request: pb.ListAliasesRequest, context: Context) -> pb.ListAliasesResponse:
        found, token = await self._domain.list_aliases(
            request.model_id, request.page_size, request.page_token
        )
        return pb.ListAliasesResponse(
            aliases=[to_alias(a, history=False) for a in found], next_page_token=token
        )

    @unary_errors
    @headers_first
    async def Upload(self, requests: AsyncIterator[pb.UploadRequest], context: Context) -> pb.UploadResponse:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header", "the first message of an upload must be its header")
        header = first.header
        declared = UploadData(
            header.model_id, header.digest, header.size_bytes, header.media_type, dict(header.metadata)
        )
        done = await self._domain.upload(header.upload_id, declared, header.offset, _chunks(requests))
        return pb.UploadResponse(
            version=to_version(done.version),
            bytes_received=done.bytes_received,
            deduplicated=done.deduplicated,
        )

    @unary_errors
    async def QueryUpload(self, request: pb.QueryUploadRequest, context: Context) -> pb.UploadStatus:
        state = await self._domain.query_upload(request.upload_id, request.digest)
        status = pb.UploadStatus(
            upload_id=request.upload_id,
            committed_offset=state.committed_offset,
            digest_present=state.digest_present,
        )
        if state.version is not None:
            status.state = pb.VERSION_STATE_READY
            status.version.CopyFrom(to_version(state.version))
        elif state.under_way:
            status.state = pb.VERSION_STATE_UPLOADING
        return status

    @stream_errors
    async def ReadBlob(
        self, request: pb.ReadBlobRequest, context: Context
    ) -> AsyncIterator[pb.ReadBlobResponse | bytes]:
        """The pinning first message, then ReadBlobResponses holding only data, as wire bytes."""
        opened = await self._domain.open_blob(request.ref, request.offset, request.limit)
        first = pb.ReadBlobResponse(digest=opened.digest, size_bytes=opened.size)
        if opened.version is not None:
            first.version.CopyFrom(to_version(opened.version))
        yield first
        async for chunk in opened.chunks:
            yield wire.field(_DATA_FIELD, chunk)  # one copy, where a message would take two

    @stream_errors
    async def WatchModels(
        self, request: pb.WatchModelsRequest, context: Context
    ) -> AsyncIterator[pb.WatchModelsResponse]:
        start = await self._domain.watch_start(request.resume_token, request.model_id)
        await context.send_initial_metadata(())
        async for event in until_stopping(self._domain.watch(start, request.model_id), self._stopping):
            yield to_event(event)
