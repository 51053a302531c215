"""T1-T4, the telemetry figures of issue 14.

T1: a hot loop (a fixed slice of CPU work, then `record()`), p99 per iteration with the server up, refusing
    connections and black-holed, vs the same loop with telemetry disabled; and record()'s own p99.
T2: RSS growth over many records with the server down (10 million in a full run), after the buffer filled.
T3: RecordEvents ingest, batches of 512, 4 in flight, into one server process on Redis, vs the same entries
    appended straight to the Redis log store from this process (the raw writes, no gRPC, checks or fold).
T4: QueryAggregates over an hour of minute rollups vs the raw batch_get of those 60 records.
T5: RecordEvents ingest with a subject id on every event (64 subjects per batch, pseudonymised by the server
    under per-subject keys, issue 15) vs the same batches without subject ids.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_least, at_most
from bench.stack import Settings
from microstate.client.telemetry.v1 import SyncTelemetryClient, TelemetryClient, TelemetryQueryClient
from microstate.server.store import open_store
from microstate.server.store.log import open_log
from microstate.server.telemetry.rollups import CHECKPOINT_KEY, rollup_key
from microstate.telemetry.storage.v1 import record_pb2 as storage
from microstate.telemetry.v1 import telemetry_pb2 as pb
from microstate.telemetry.v1 import telemetry_pb2_grpc
from tests.client.telemetry_support import black_hole, refusing_target

WORK = 2_000
"""Additions per loop iteration: the stand-in for the application's own work (~20 µs)."""
BATCH = 512
IN_FLIGHT = 4
MIB = 1024 * 1024


def _work() -> int:
    total = 0
    for i in range(WORK):
        total += i
    return total


def _loop_p99(record: Callable[[], None], iterations: int) -> tuple[float, float]:
    """(p99 of one loop iteration, p99 of the record() call alone), seconds."""
    clock = time.perf_counter_ns
    loop, calls = [], []
    for _ in range(iterations):
        started = clock()
        _work()
        before = clock()
        record()
        ended = clock()
        loop.append((ended - started) / 1e9)
        calls.append((ended - before) / 1e9)
    return percentile(loop, 0.99), percentile(calls, 0.99)


def _record_rows(settings: Settings, up_target: str) -> list[Row]:
    iterations = settings.samples * 20
    rows = []
    with black_hole() as hole:
        servers = (("up", up_target), ("down (refused)", refusing_target()), ("black-holed", hole))
        for label, target in servers:
            client = TelemetryClient(target)
            disabled = TelemetryClient(target, enabled=False)
            subject, baseline, own = [], [], []
            for _ in range(settings.rounds):
                on = functools.partial(client.record, "inference.latency", 0.01)
                loop, call = _loop_p99(on, iterations)
                subject.append(loop)
                own.append(call)
                off = functools.partial(disabled.record, "inference.latency", 0.01)
                baseline.append(_loop_p99(off, iterations)[0])
            client.close(1.0)
            ratio = load.paired_ratio(subject, baseline)
            rows.append(
                Row(
                    "T1",
                    f"hot loop p99, server {label}: record() on vs telemetry disabled",
                    sorted(subject)[len(subject) // 2],
                    sorted(baseline)[len(baseline) // 2],
                    "s",
                    ratio,
                    at_most(1.05),
                    f"{iterations:,} iterations x {settings.rounds} rounds",
                )
            )
            rows.append(Row("T1", f"record() alone p99, server {label}", max(own), None, "s", None,
                            at_most(2e-6, on="value", text="≤ 2 µs"), "worst round"))  # fmt: skip
    return rows


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_row(settings: Settings) -> Row:
    count = 1_000_000 if settings.rounds < 5 else 10_000_000
    client = TelemetryClient(refusing_target())
    for _ in range(20_000):  # the buffer fills and the worker meets the dead server
        client.record("x", 1.0, attributes={"model": "m"})
    before = _rss()
    for _ in range(count):
        client.record("x", 1.0, attributes={"model": "m"})
    growth = _rss() - before
    stats = client.stats()
    client.close(1.0)
    return Row("T2", f"RSS growth over {count:,} records, server down", growth / MIB, None, "MiB", None,
               at_most(5, on="value", text="≤ 5 MiB"),
               f"balanced={stats.balanced}, dropped {sum(stats.dropped.values()):,}")  # fmt: skip


def _batch(seq: int) -> list[pb.Event]:
    now = time.time_ns()
    return [
        pb.Event(name="inference.latency", value=0.001 * (i % 100), time_unix_nano=now,
                 attributes={"model": f"m{i % 4}", "region": "eu"})
        for i in range(BATCH)
    ]  # fmt: skip


async def _ingest_rows(settings: Settings, url: str, target: str) -> list[Row]:
    events = _batch(0)
    sequence = itertools.count(1)
    producer = uuid.uuid4().hex
    log = await open_log(url, f"raw{uuid.uuid4().hex}")
    entry = storage.StoredBatch(producer_id=producer, events=events, accepted=BATCH).SerializeToString()
    # The raw call on a plain channel: T3 measures the server, not the SDK's recorder.
    async with grpc.aio.insecure_channel(target) as channel:
        stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)

        async def sdk_once() -> None:
            request = pb.RecordEventsRequest(producer_id=producer, batch_seq=next(sequence), events=events)
            await stub.RecordEvents(request, timeout=10)

        async def raw_once() -> None:
            await log.append([entry], dedupe_key=f"{producer}:{next(sequence)}")

        async def sdk_window() -> load.Throughput:
            return await load.closed_loop([sdk_once] * IN_FLIGHT, settings.window)

        async def raw_window() -> load.Throughput:
            return await load.closed_loop([raw_once] * IN_FLIGHT, settings.window)

        subject, baseline = await load.interleaved(settings.rounds, sdk_window, raw_window)
        await _fold_caught_up(url)
        # The fold alone: one more ingest window, then until the fold has caught up with it.
        started = time.monotonic()
        last = await sdk_window()
        folded_after = await _fold_caught_up(url)
        fold_rate = last.calls * BATCH / (time.monotonic() - started)
    await log.close()
    rates = [w.calls * BATCH / w.seconds for w in subject]
    raw = [w.calls * BATCH / w.seconds for w in baseline]
    median_rate, median_raw = sorted(rates)[len(rates) // 2], sorted(raw)[len(raw) // 2]
    return [
        Row("T3", "RecordEvents events/s (batches of 512, 4 in flight), one server on Redis, vs log appends",
            median_rate, median_raw, "events/s", load.paired_ratio(rates, raw),
            None, "target on the value: ≥ 100,000 events/s"),
        Row("T3", "the same, the ingest rate alone", median_rate, None, "events/s", None,
            at_least(100_000, on="value", text="≥ 100,000/s")),
        Row("T3", "fold into rollups: events of one ingest window / (the window + the fold catching up)",
            fold_rate, None, "events/s", None, None, f"caught up {folded_after:.1f} s after the window"),
    ]  # fmt: skip


async def _pseudonym_rows(settings: Settings, target: str) -> list[Row]:
    plain = _batch(0)
    named = [pb.Event(name=e.name, value=e.value, time_unix_nano=e.time_unix_nano, attributes=e.attributes,
                      subject_id=f"user-{i % 64}") for i, e in enumerate(plain)]  # fmt: skip
    sequence = itertools.count(1)
    producer = uuid.uuid4().hex
    async with grpc.aio.insecure_channel(target) as channel:
        stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)

        def window(events: list[pb.Event]) -> Callable[[], Awaitable[load.Throughput]]:
            async def once() -> None:
                request = pb.RecordEventsRequest(
                    producer_id=producer, batch_seq=next(sequence), events=events
                )
                await stub.RecordEvents(request, timeout=10)

            return lambda: load.closed_loop([once] * IN_FLIGHT, settings.window)

        subject, baseline = await load.interleaved(settings.rounds, window(named), window(plain))
    rates = [w.calls * BATCH / w.seconds for w in subject]
    raw = [w.calls * BATCH / w.seconds for w in baseline]
    median_rate, median_raw = sorted(rates)[len(rates) // 2], sorted(raw)[len(raw) // 2]
    return [
        Row("T5", "RecordEvents events/s with subject ids (64 per batch, pseudonymised) vs without",
            median_rate, median_raw, "events/s", load.paired_ratio(rates, raw), None,
            "batches of 512, 4 in flight, one server on Redis; the baseline also sends no ids"),
    ]  # fmt: skip


async def _fold_caught_up(url: str) -> float:
    """Seconds until the server's fold checkpoint reaches its log's head (at most a few minutes)."""
    store, log = await open_store(url, "telemetry"), await open_log(url, "telemetry")
    started = time.monotonic()
    try:
        head = int(await log.head())
        for _ in range(3000):
            record = await store.get(CHECKPOINT_KEY)
            if record and storage.Checkpoint.FromString(record.value).folded_through >= head:
                break
            await asyncio.sleep(0.1)  # the fold catching up is what is timed, at this resolution
        return time.monotonic() - started
    finally:
        await store.close()
        await log.close()


async def _query_rows(settings: Settings, url: str, target: str) -> list[Row]:
    now = time.time_ns()
    minute_ns = 60_000_000_000
    this_minute = now // minute_ns
    with SyncTelemetryClient(target) as client:
        for minute in range(60):
            events = [
                pb.Event(name="q", value=0.001 * i, time_unix_nano=(this_minute - minute) * minute_ns + 1,
                         attributes={"model": f"m{i % 10}"})
                for i in range(200)
            ]  # fmt: skip
            client.record_events("bench", minute + 1, events)
    store = await open_store(url, "telemetry")
    keys = [rollup_key("q", this_minute - m) for m in range(60)]
    for _ in range(600):  # the fold catching up (up to a minute), not what is measured
        if len(await store.batch_get(keys)) == 60:
            break
        await asyncio.sleep(0.1)
    start, end = (this_minute - 59) * 60, (this_minute + 1) * 60
    async with TelemetryQueryClient(target) as client:

        async def query() -> None:
            await client.query_aggregates("q", start, end, step=60, group_by="model")

        async def raw() -> None:
            await store.batch_get(keys)

        count = settings.samples // 5
        subject, baseline = await load.interleaved(
            settings.rounds, load.sampler(query, count), load.sampler(raw, count)
        )
    await store.close()
    p50 = sorted(percentile(s, 0.5) for s in subject)[len(subject) // 2]
    raw50 = sorted(percentile(b, 0.5) for b in baseline)[len(baseline) // 2]
    p99 = max(percentile(s, 0.99) for s in subject)
    return [
        Row("T4", "QueryAggregates over an hour of minute rollups (10 groups) p50 vs raw batch_get of the 60",
            p50, raw50, "s", p50 / raw50, None, f"p99 {p99 * 1e3:.1f} ms"),
        Row("T4", "the same, p99", p99, None, "s", None, at_most(0.010, on="value", text="≤ 10 ms")),
    ]  # fmt: skip


async def telemetry(settings: Settings) -> list[Row]:
    with (
        services.redis(settings.cores.server) as url,
        services.microstate_server("telemetry", url, settings.workdir / "t", settings.cores.server) as server,
    ):
        rows = _record_rows(settings, server.target)
        rows.append(_rss_row(settings))
        rows += await _ingest_rows(settings, url, server.target)
        rows += await _pseudonym_rows(settings, server.target)
        rows += await _query_rows(settings, url, server.target)
    return rows
