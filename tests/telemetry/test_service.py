"""The telemetry service end to end over gRPC on every backend: ingest, dedupe, partial success, queries,
watch."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microstate.telemetry.v1 import telemetry_pb2 as pb
from microstate.telemetry.v1.telemetry_pb2_grpc import TelemetryServiceStub
from tests.support.processes import until
from tests.telemetry.conftest import MINUTE_NS, event, this_minute_ns

WITHIN = 30.0


def window(name: str = "latency", group_by: str = "", minutes: int = 2) -> pb.QueryAggregatesRequest:
    end = this_minute_ns() + MINUTE_NS
    start = end - minutes * MINUTE_NS
    return pb.QueryAggregatesRequest(
        name=name,
        start_time=timestamp_pb2.Timestamp(seconds=start // 10**9),
        end_time=timestamp_pb2.Timestamp(seconds=end // 10**9),
        step=duration_pb2.Duration(seconds=minutes * 60),
        group_by=group_by,
    )


async def total(stub: TelemetryServiceStub, name: str = "latency", minutes: int = 2) -> int:
    response = await stub.QueryCounts(pb.QueryCountsRequest(**_fields(window(name, minutes=minutes))))
    return sum(bucket.count for series in response.series for bucket in series.buckets)


def _fields(request: pb.QueryAggregatesRequest) -> dict[str, object]:
    return {field.name: value for field, value in request.ListFields()}


async def folded(stub: TelemetryServiceStub, count: int, name: str = "latency", minutes: int = 2) -> None:
    await until(lambda: _equals(stub, name, count, minutes), within=WITHIN, what=f"{count} events folded")


async def _equals(stub: TelemetryServiceStub, name: str, count: int, minutes: int) -> bool:
    return await total(stub, name, minutes) == count


async def test_events_fold_into_counts_and_aggregates(stub: TelemetryServiceStub) -> None:
    events = [event(value=v / 1000, model="a" if v % 2 else "b") for v in range(1, 101)]
    response = await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p1", batch_seq=1, events=events))
    assert (response.accepted, response.rejected, response.duplicate) == (100, 0, False)
    await folded(stub, 100)
    aggregates = await stub.QueryAggregates(window(group_by="model"))
    by_model = {series.group_value: series.buckets[0] for series in aggregates.series}
    assert {model: bucket.count for model, bucket in by_model.items()} == {"a": 50, "b": 50}
    assert by_model["a"].sum == pytest.approx(sum(v / 1000 for v in range(1, 101, 2)))
    assert by_model["b"].min == pytest.approx(0.002) and by_model["b"].max == pytest.approx(0.1)
    histogram = by_model["a"].histogram
    assert sum(b.count for b in histogram.buckets) == 50
    assert histogram.p50 == pytest.approx(0.05, rel=0.1)
    assert histogram.p99 == pytest.approx(0.099, rel=0.1)


async def test_a_resent_batch_counts_once_and_gets_the_first_answer(stub: TelemetryServiceStub) -> None:
    request = pb.RecordEventsRequest(producer_id="p1", batch_seq=7, events=[event(), event(name="bad name")])
    first = await stub.RecordEvents(request)
    again = await asyncio.gather(*(stub.RecordEvents(request) for _ in range(5)))
    assert (first.accepted, first.rejected, first.duplicate) == (1, 1, False)
    for answer in again:
        assert (answer.accepted, answer.rejected, answer.duplicate) == (1, 1, True)
        assert answer.error_message == first.error_message
    await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p1", batch_seq=8, events=[event()]))
    await folded(stub, 2)


async def test_bad_events_are_rejected_one_by_one(stub: TelemetryServiceStub) -> None:
    events = [
        event(),
        event(name=""),
        event(value=float("nan")),
        pb.Event(name="latency", value=1, count=5, time_unix_nano=1),  # far outside the retention
        pb.Event(name="latency", value=1, attributes={"bad key": "x"}),
        pb.Event(name="latency", value=10, count=4),  # time 0: now
    ]
    response = await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p", batch_seq=1, events=events))
    assert (response.accepted, response.rejected) == (5, 8)
    assert response.error_message.startswith("events[1].name:")
    await folded(stub, 5)


async def test_a_malformed_batch_is_invalid_argument(stub: TelemetryServiceStub) -> None:
    for request, field in (
        (pb.RecordEventsRequest(producer_id="", events=[event()]), "producer_id"),
        (pb.RecordEventsRequest(producer_id="p", events=[event()] * 4097), "events"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.RecordEvents(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(caught.value)
        assert status is not None
        violations = error_details_pb2.BadRequest()
        assert any(d.Unpack(violations) for d in status.details)
        assert violations.field_violations[0].field == field


async def test_query_windows_are_checked(stub: TelemetryServiceStub) -> None:
    bad = window()
    bad.start_time.seconds += 1
    long = window(minutes=31 * 24 * 60 + 1)
    backwards = window()
    backwards.end_time.seconds = backwards.start_time.seconds
    step = window()
    step.step.seconds = 90
    for request in (bad, long, backwards, step, window(name="no spaces"), window(group_by="a b")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.QueryAggregates(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_empty_batch_stores_nothing(stub: TelemetryServiceStub) -> None:
    response = await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p", batch_seq=1))
    assert (response.accepted, response.rejected) == (0, 0)


async def test_watch_streams_each_changed_minute_and_resumes(stub: TelemetryServiceStub) -> None:
    call = stub.WatchAggregates(pb.WatchAggregatesRequest(name="latency", group_by="model"))
    await call.initial_metadata()
    await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p", batch_seq=1, events=[event(model="m")]))
    first = await call.read()
    assert isinstance(first, pb.WatchAggregatesResponse)
    assert [(s.group_value, s.buckets[0].count) for s in first.series] == [("m", 1)]
    call.cancel()
    await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p", batch_seq=2, events=[event(model="m")]))
    resumed = stub.WatchAggregates(
        pb.WatchAggregatesRequest(name="latency", group_by="model", resume_token=first.resume_token)
    )
    second = await resumed.read()
    assert isinstance(second, pb.WatchAggregatesResponse)
    assert second.series[0].buckets[0].count == 2  # the whole minute, as it now is
    resumed.cancel()


async def test_minutes_are_cut_into_steps(stub: TelemetryServiceStub) -> None:
    now = this_minute_ns()
    events = [pb.Event(name="n", value=1, time_unix_nano=now - m * MINUTE_NS + 1) for m in range(6)]
    await stub.RecordEvents(pb.RecordEventsRequest(producer_id="p", batch_seq=1, events=events))
    await folded(stub, 6, name="n", minutes=6)
    request = window(name="n", minutes=6)
    request.step.seconds = 120
    response = await stub.QueryAggregates(request)
    assert [b.count for b in response.series[0].buckets] == [2, 2, 2]
