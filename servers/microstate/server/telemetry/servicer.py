"""The gRPC servicer of microstate.telemetry.v1: messages <-> domain values, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from microstate.server.commit import headers_first
from microstate.server.errors import stream_errors, unary_errors
from microstate.server.kit import wire
from microstate.server.streams import until_stopping
from microstate.server.telemetry.domain import TelemetryDomain, Window
from microstate.server.wellknown import duration, duration_ns, timestamp_ns
from microstate.telemetry.v1 import telemetry_pb2 as pb

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE: ServiceDescriptor = pb.DESCRIPTOR.services_by_name["TelemetryService"]


def _window(request: pb.QueryCountsRequest | pb.QueryAggregatesRequest) -> Window:
    step = duration_ns(request.step, "step") if request.HasField("step") else None
    return Window(
        request.name,
        timestamp_ns(request.start_time, "start_time"),
        timestamp_ns(request.end_time, "end_time"),
        step,
        request.group_by,
    )


class TelemetryServicer:
    """Implements TelemetryService over one TelemetryDomain."""

    def __init__(self, domain: TelemetryDomain, stopping: asyncio.Event | None = None) -> None:
        self._domain = domain
        self._stopping = stopping

    @unary_errors
    @headers_first
    async def RecordEvents(
        self, request: pb.RecordEventsRequest, context: Context
    ) -> pb.RecordEventsResponse:
        recorded = await self._domain.record(request)
        response = pb.RecordEventsResponse(
            accepted=recorded.accepted,
            rejected=recorded.rejected,
            error_message=recorded.error_message,
            duplicate=recorded.duplicate,
        )
        if recorded.slow_down:
            response.retry_after.CopyFrom(duration(int(recorded.slow_down * 1e9)))
        return response

    # Answers are wire bytes (kit/wire.py): an hour of rollups is thousands of histogram buckets, most of
    # them encoded once and reused. QueryCountsResponse.series and QueryAggregatesResponse.series are field 1.

    @unary_errors
    async def QueryCounts(self, request: pb.QueryCountsRequest, context: Context) -> bytes:
        """A QueryCountsResponse, as wire bytes."""
        return wire.repeated(1, await self._domain.query(_window(request), histogram=False))

    @unary_errors
    async def QueryAggregates(self, request: pb.QueryAggregatesRequest, context: Context) -> bytes:
        """A QueryAggregatesResponse, as wire bytes."""
        return wire.repeated(1, await self._domain.query(_window(request), histogram=True))

    @stream_errors
    async def WatchAggregates(
        self, request: pb.WatchAggregatesRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """WatchAggregatesResponses, as wire bytes (series field 1, resume_token field 2)."""
        start = await self._domain.watch_start(request.name, request.group_by, request.resume_token)
        await context.send_initial_metadata(())
        updates = self._domain.watch(request.name, request.group_by, start)
        async for update in until_stopping(updates, self._stopping):
            yield wire.repeated(1, update.series) + wire.field(2, update.resume_token.encode())
