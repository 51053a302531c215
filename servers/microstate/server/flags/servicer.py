"""The gRPC servicer of microstate.flags.v1: messages in, domain calls, messages out; nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.flags.v1 import flags_pb2 as pb
from microstate.server.commit import headers_first
from microstate.server.errors import stream_errors, unary_errors
from microstate.server.flags.domain import FlagsDomain
from microstate.server.streams import until_stopping

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["FlagService"]


class FlagServicer:
    """Implements FlagService over one FlagsDomain."""

    def __init__(self, domain: FlagsDomain, stopping: asyncio.Event | None = None) -> None:
        self._domain = domain
        self._stopping = stopping

    @unary_errors
    async def GetFlag(self, request: pb.GetFlagRequest, context: Context) -> pb.Flag:
        return await self._domain.get(request.key)

    @unary_errors
    async def ListFlags(self, request: pb.ListFlagsRequest, context: Context) -> pb.ListFlagsResponse:
        flags, token = await self._domain.page(request.page_size, request.page_token)
        return pb.ListFlagsResponse(flags=flags, next_page_token=token)

    @unary_errors
    @headers_first
    async def CreateFlag(self, request: pb.CreateFlagRequest, context: Context) -> pb.Flag:
        return await self._domain.create(request.flag, validate_only=request.validate_only)

    @unary_errors
    @headers_first
    async def UpdateFlag(self, request: pb.UpdateFlagRequest, context: Context) -> pb.UpdateFlagResponse:
        flag, impact = await self._domain.update(
            request.flag, list(request.update_mask.paths), validate_only=request.validate_only
        )
        return pb.UpdateFlagResponse(flag=flag, impact=impact)

    @unary_errors
    @headers_first
    async def DeleteFlag(self, request: pb.DeleteFlagRequest, context: Context) -> pb.DeleteFlagResponse:
        return pb.DeleteFlagResponse(revision=await self._domain.delete(request.key, request.etag))

    @unary_errors
    async def EvaluateFlag(self, request: pb.EvaluateFlagRequest, context: Context) -> pb.Evaluation:
        return await self._domain.evaluate(request.key, request.context, request.expected_type)

    @unary_errors
    async def EvaluateAll(self, request: pb.EvaluateAllRequest, context: Context) -> pb.EvaluateAllResponse:
        return await self._domain.evaluate_all(request.context)

    @stream_errors
    async def SyncFlags(
        self, request: pb.SyncFlagsRequest, context: Context
    ) -> AsyncIterator[pb.SyncFlagsResponse]:
        async for message in until_stopping(self._domain.sync(request.since_revision), self._stopping):
            yield message
