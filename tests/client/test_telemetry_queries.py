"""The telemetry SDK's calls against a real server in this process: a batch through `record_events`,
counts and aggregates through the query calls, and the rollup watch resuming after its last update."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microstate.client.telemetry.v1 import Event, TelemetryQueryClient
from microstate.server.store import open_store
from microstate.server.store.log import open_log
from microstate.server.store.roles import RECORDS, Stores
from microstate.server.telemetry import LOG, MICROSTATE
from tests.support.inproc import serve_in_process
from tests.support.processes import until

MINUTE = 60


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TelemetryQueryClient]:
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    records, log = await open_store(url, "telemetry"), await open_log(url, "telemetry")
    stores = Stores({RECORDS.name: (RECORDS, records), LOG.name: (LOG, log)})
    async with (
        serve_in_process(MICROSTATE, stores) as target,
        TelemetryQueryClient(target) as telemetry,
    ):
        yield telemetry
    await stores.close()


def events(count: int, model: str) -> list[Event]:
    return [Event(name="lat", value=0.01, time_unix_nano=time.time_ns(), attributes={"model": model})] * count


async def test_a_batch_is_queried_as_counts_and_aggregates(client: TelemetryQueryClient) -> None:
    answer = await client.record_events("p", 1, events(3, "a") + events(2, "b"))
    assert (answer.accepted, answer.rejected) == (5, 0)
    again = await client.record_events("p", 1, events(3, "a") + events(2, "b"))
    assert again.duplicate
    end = (int(time.time()) // MINUTE + 1) * MINUTE

    async def counted() -> bool:
        read = await client.query_counts("lat", end - 10 * MINUTE, end, step=10 * MINUTE, group_by="model")
        return {s.group_value: s.buckets[0].count for s in read.value.series} == {"a": 3, "b": 2}

    await until(counted, within=30, what="the batch folded once")
    read = await client.query_aggregates("lat", end - 10 * MINUTE, end, step=10 * MINUTE)
    bucket = read.value.series[0].buckets[0]
    assert (bucket.count, round(bucket.sum, 9), bucket.histogram.p50) == (5, 0.05, pytest.approx(0.01))


async def test_the_watch_streams_changed_minutes_and_resumes(client: TelemetryQueryClient) -> None:
    watch = client.watch_aggregates("lat", group_by="model")
    first = asyncio.ensure_future(anext(watch))
    # The stream is open once the server has answered its headers; until then, a batch could precede it.
    await until(lambda: _recorded_while(first, client), within=30, what="an update from the watch")
    update = await first
    assert update.series and update.resume_token
    await watch.aclose()
    await client.record_events("p", 1000, events(1, "z"))
    resumed = client.watch_aggregates("lat", group_by="model", resume_token=update.resume_token)
    later = await asyncio.wait_for(anext(resumed), 30)
    assert "z" in {s.group_value for s in later.series}
    await resumed.aclose()


_seq = iter(range(2, 10**6))


async def _recorded_while(pending: asyncio.Future[object], client: TelemetryQueryClient) -> bool:
    """Send a batch; True once the watch has delivered (batches before the stream opened are not seen)."""
    if not pending.done():
        await client.record_events("p", next(_seq), events(1, "w"))
        await asyncio.wait({pending}, timeout=0.2)
    return pending.done()
