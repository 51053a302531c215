"""TelemetryQueryClient and SyncTelemetryClient of microstate.telemetry.v1, from one declaration.

`TelemetryOperations` declares every call once (`_operations.py`); the recorder (`_recorder.py`) sends its
batches through the sync twin from its own thread.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from microstate.client import _aio, _options, _sync
from microstate.client._base import ClientBase, Contract, Resource
from microstate.client._operations import iterated, unary
from microstate.client._plans import Stream, Unary
from microstate.client._read import Read
from microstate.telemetry.v1 import telemetry_pb2 as pb
from microstate.telemetry.v1 import telemetry_pb2_grpc

DEFAULT_TARGET = "localhost:50055"
"""Where `microstate serve telemetry` listens by default."""
ENV_TARGET = _options.ENV_TARGET.format(slice="TELEMETRY")

CONTRACT = Contract(
    name=pb.DESCRIPTOR.package,
    service=pb.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
    # RecordEvents applies once however often it is sent: (producer_id, batch_seq) names the batch.
    idempotent_methods=("RecordEvents", "QueryCounts", "QueryAggregates", "WatchAggregates"),
    slice_name="telemetry",
    default_target=DEFAULT_TARGET,
    snapshots=False,  # a query is live or it fails: a dashboard shows a gap rather than old numbers
)

CallMetadata = Mapping[str, str] | Sequence[tuple[str, str]] | None
Time = datetime.datetime | float
"""A datetime (naive means UTC), or Unix seconds."""


def _timestamp(value: Time) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        stamp.FromDatetime(value)
    else:
        stamp.FromNanoseconds(round(value * 1e9))
    return stamp


W = TypeVar("W", pb.QueryCountsRequest, pb.QueryAggregatesRequest)


def _window(kind: type[W], name: str, start: Time, end: Time, step: float, group_by: str) -> W:
    """A query request (both kinds have the same fields)."""
    return kind(
        name=name,
        start_time=_timestamp(start),
        end_time=_timestamp(end),
        step=duration_pb2.Duration(seconds=int(step), nanos=round(step % 1 * 1e9)),
        group_by=group_by,
    )


def _resource(decode: Any) -> Resource[Any]:
    return Resource(decode, lambda _: "", lambda _: "")


_COUNTS = _resource(pb.QueryCountsResponse.FromString)
_AGGREGATES = _resource(pb.QueryAggregatesResponse.FromString)


class TelemetryOperations(ClientBase):
    """The calls of both telemetry clients. `timeout` is each call's deadline in seconds (None: the
    client's default); `metadata` is added to the client's. Every failure raises a typed MicrostateError.
    To record events from application code use `TelemetryClient` (never blocks); these are the raw calls."""

    CONTRACT = CONTRACT
    _stub_class = telemetry_pb2_grpc.TelemetryServiceStub

    @unary
    def record_events(
        self,
        producer_id: str,
        batch_seq: int,
        events: Sequence[pb.Event],
        *,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, pb.RecordEventsResponse]:
        """Store one batch (partial success: see accepted / rejected). Resending the same
        (producer_id, batch_seq) within 10 minutes counts it once, so a lost answer is resent once."""
        request = pb.RecordEventsRequest(producer_id=producer_id, batch_seq=batch_seq, events=events)
        return self._send(request, timeout, metadata)

    @unary
    def send_batch(
        self, request: pb.RecordEventsRequest, *, timeout: float | None = None, metadata: CallMetadata = None
    ) -> Unary[Any, pb.RecordEventsResponse]:
        """`record_events` of a request the caller built (the recorder adds its events in place)."""
        return self._send(request, timeout, metadata)

    def _send(
        self, request: pb.RecordEventsRequest, timeout: float | None, metadata: CallMetadata
    ) -> Unary[Any, pb.RecordEventsResponse]:
        return self._core.write(
            "RecordEvents",
            request,
            "",
            lambda response: response,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
            resend_if_lost=True,
        )

    @unary
    def query_counts(
        self,
        name: str,
        start: Time,
        end: Time,
        *,
        step: float = 60.0,
        group_by: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Read[pb.QueryCountsResponse]]:
        """Count and sum per `step` seconds (whole minutes) of events `name` in [start, end) (whole
        minutes, at most 31 days), in total or per value of attribute `group_by`."""
        request = _window(pb.QueryCountsRequest, name, start, end, step, group_by)
        metadata = self._core.metadata(metadata)
        return self._core.read_live(_COUNTS, "QueryCounts", request, timeout=timeout, metadata=metadata)

    @unary
    def query_aggregates(
        self,
        name: str,
        start: Time,
        end: Time,
        *,
        step: float = 60.0,
        group_by: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Unary[Any, Read[pb.QueryAggregatesResponse]]:
        """As query_counts, with min, max, a histogram and p50 / p90 / p99 per bucket."""
        request = _window(pb.QueryAggregatesRequest, name, start, end, step, group_by)
        metadata = self._core.metadata(metadata)
        return self._core.read_live(
            _AGGREGATES, "QueryAggregates", request, timeout=timeout, metadata=metadata
        )

    @iterated
    def watch_aggregates(
        self,
        name: str,
        *,
        group_by: str = "",
        resume_token: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = None,
    ) -> Stream[pb.WatchAggregatesResponse]:
        """Each minute rollup of `name` as it changes (the whole minute: replace, do not add), from just
        after `resume_token` (None: from now); reconnects by itself and resumes after the last one seen."""

        def request_for(token: str) -> pb.WatchAggregatesRequest:
            return pb.WatchAggregatesRequest(name=name, group_by=group_by, resume_token=token)

        return self._core.watch(
            "WatchAggregates",
            request_for,
            resume_token or "",
            lambda event: event,
            timeout=timeout,
            metadata=self._core.metadata(metadata),
        )


class TelemetryQueryClient(_aio.AsyncClient, TelemetryOperations):
    """Async client of microstate.telemetry.v1's calls: `async with TelemetryQueryClient(...) as t:`."""

    def __init__(self, target: str | None = None, *, options: _options.ClientOptions | None = None) -> None:
        super().__init__(target, options=options)


class SyncTelemetryClient(_sync.SyncClient, TelemetryOperations):
    """Blocking client of microstate.telemetry.v1's calls; thread-safe."""

    def __init__(self, target: str | None = None, *, options: _options.ClientOptions | None = None) -> None:
        super().__init__(target, options=options)
