"""Throughput: P1 (the full stack vs a bare echo server), P2 (BatchGet vs Redis), P6 (two servers vs one)."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from statistics import median
from typing import cast

import grpc
import redis.asyncio as aioredis

from bench import echo_server, load, services
from bench.load import H2Run, H2Window, Throughput
from bench.report import Row, Target, at_least
from bench.stack import HOT_KEY, Settings, batch_ids, full_stack
from microstate.client.profile.v1 import ProfileClient
from microstate.profile.v1 import profile_pb2

SERVICE = "/microstate.profile.v1.ProfileService"
GET = f"{SERVICE}/GetProfile"
BATCH_GET = f"{SERVICE}/BatchGetProfiles"
RECORD_KEY = "ms:{{profile}}:r:{}"
"""Where the Redis store keeps a profile record (the layout documented in microstate.server.store.redis)."""


def compared(
    figure: str,
    what: str,
    subject: Sequence[float],
    baseline: Sequence[float],
    unit: str,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """A row of medians whose ratio is the median of the per-round ratios (rounds measured back to back)."""
    details = {"subject": list(subject), "baseline": list(baseline)}
    ratio = load.paired_ratio(subject, baseline)
    return Row(figure, what, median(subject), median(baseline), unit, ratio, target, note, details)


def _rates(windows: Sequence[Throughput], per_call: int = 1) -> list[float]:
    return [window.rate * per_call for window in windows]


def _h2_rates(runs: Sequence[H2Run], per_call: int = 1) -> list[float]:
    return [sum(result.rate for result in results) * per_call for results, _ in runs]


def _cpu(windows: Sequence[Throughput]) -> float:
    return median(sum(window.server_cpu) for window in windows)


def _cpu_per_call(windows: Sequence[Throughput]) -> float:
    return median(window.server_cpu_per_call for window in windows)


def _h2_cpu_per_call(runs: Sequence[H2Run]) -> float:
    return median(sum(cpu) / sum(result.rate for result in results) for results, cpu in runs)


def _micros(runs: Sequence[H2Run], per_call: int = 1) -> str:
    """Server CPU per call (or per item, with `per_call` items in a call)."""
    per_item = _h2_cpu_per_call(runs) * 1e6 / per_call
    return f"{per_item:.1f} µs" if per_call > 1 else f"{per_item:.0f} µs"


def _body(settings: Settings, name: str, message: bytes) -> Path:
    path = settings.workdir / f"{name}.grpc"
    path.write_bytes(load.grpc_frame(message))
    return path


def _checked(target: str, method: str, body: Path) -> None:
    if not load.grpc_status_ok(target, method, body):
        raise RuntimeError(f"{method} on {target} does not answer grpc-status 0 to the h2load body")


async def p1(settings: Settings) -> list[Row]:
    rounds, window, inflight = settings.rounds, settings.window, settings.concurrency
    request = profile_pb2.GetProfileRequest(user_id=HOT_KEY).SerializeToString()
    async with full_stack(settings, "p1") as (url, server), ProfileClient(server.target) as sdk:
        payload = (await sdk.get(HOT_KEY)).value.SerializeToString()
        with (
            services.echo_server(len(payload), settings.workdir / "echo", settings.cores.server) as echo,
            services.echo_server(
                len(payload), settings.workdir / "echo-redis", settings.cores.server, redis_url=url
            ) as echo_redis,
        ):
            body = _body(settings, "get", request)
            for target, method in ((echo.target, echo_server.METHOD), (echo_redis.target, echo_server.METHOD),
                                   (server.target, GET)):  # fmt: skip
                _checked(target, method, body)
            async with grpc.aio.insecure_channel(echo.target) as channel:
                echo_call = channel.unary_unary(echo_server.METHOD)  # identity serializers: bytes in and out

                async def echo_once() -> None:
                    await echo_call(request, timeout=5.0)

                async def sdk_once() -> None:
                    await sdk.get(HOT_KEY)

                async def echo_window() -> Throughput:
                    return await load.closed_loop([echo_once] * inflight, window, [echo.pid])

                async def sdk_window() -> Throughput:
                    return await load.closed_loop([sdk_once] * inflight, window, [server.pid])

                await echo_window(), await sdk_window()  # warm up both sides
                # Both clients in one interleave, so even the Python-vs-h2load comparison is paired.
                base, subject, h2_base, h2_redis, h2_subject = await load.interleaved(
                    rounds,
                    echo_window,
                    sdk_window,
                    H2Window([(echo.target, echo_server.METHOD, body)], window, inflight, [echo.pid]),
                    H2Window(
                        [(echo_redis.target, echo_server.METHOD, body)], window, inflight, [echo_redis.pid]
                    ),
                    H2Window([(server.target, GET, body)], window, inflight, [server.pid]),
                )

    py_base, py_subject = _rates(base), _rates(subject)
    h2_base_rates, h2_redis_rates, h2_subject_rates = (
        _h2_rates(h2_base),
        _h2_rates(h2_redis),
        _h2_rates(h2_subject),
    )
    cpu_note = (
        f"server CPU/call {_cpu_per_call(subject) * 1e6:.0f} µs vs echo {_cpu_per_call(base) * 1e6:.0f} µs; "
        f"server busy {_cpu(subject):.2f} / echo {_cpu(base):.2f} cores"
    )
    return [
        compared(
            "P1",
            f"GetProfile SDK→server→Redis vs bare grpc.aio echo ({len(payload)} B reply), "
            f"Python client, {inflight} in flight",
            py_subject,
            py_base,
            "calls/s",
            at_least(0.7),
            cpu_note,
        ),
        compared(
            "P1",
            f"the same, h2load (C) client: 1 connection, {inflight} streams, pre-framed gRPC body",
            h2_subject_rates,
            h2_base_rates,
            "calls/s",
            at_least(0.7),
            f"server CPU/call {_micros(h2_subject)} vs echo {_micros(h2_base)}",
        ),
        compared(
            "P1",
            "ceiling: echo + one Redis GET per call on the store's pipelined connection vs bare echo, h2load",
            h2_redis_rates,
            h2_base_rates,
            "calls/s",
            note=f"server CPU/call {_micros(h2_redis)}",
        ),
        compared(
            "P1",
            "full stack vs that ceiling (echo + one Redis GET), h2load",
            h2_subject_rates,
            h2_redis_rates,
            "calls/s",
        ),
        compared(
            "P1",
            "is the Python client the bound? Python SDK vs h2load on the full stack (≈1: no)",
            py_subject,
            h2_subject_rates,
            "calls/s",
            note=f"echo: Python {median(py_base):,.0f} vs h2load {median(h2_base_rates):,.0f} calls/s",
        ),
    ]


async def m1(settings: Settings) -> list[Row]:
    """What --metrics-port costs GetProfile: two profile servers on one Redis, one of them measured and
    scraped after each of its windows, both driven by h2load in one interleave."""
    rounds, window, inflight = settings.rounds, settings.window, settings.concurrency
    request = profile_pb2.GetProfileRequest(user_id=HOT_KEY).SerializeToString()
    metrics = ("--metrics-port", "0")
    async with full_stack(settings, "m1") as (url, plain):
        with services.profile_server(
            url, settings.workdir / "m1", settings.cores.server, flags=metrics
        ) as measured:
            body = _body(settings, "m1-get", request)
            for target in (plain.target, measured.target):
                _checked(target, GET, body)
            metrics_url = f"http://127.0.0.1:{measured.ready['metrics_port']}/metrics"
            measured_window = H2Window([(measured.target, GET, body)], window, inflight, [measured.pid])

            async def scraped() -> H2Run:
                run = await measured_window()
                await asyncio.to_thread(_fetch, metrics_url)  # as Prometheus would, now and then
                return run

            base, subject = await load.interleaved(
                rounds, H2Window([(plain.target, GET, body)], window, inflight, [plain.pid]), scraped
            )
    return [
        compared(
            "M1",
            f"GetProfile with --metrics-port vs without (same Redis), h2load, {inflight} streams",
            _h2_rates(subject),
            _h2_rates(base),
            "calls/s",
            at_least(0.95),
            f"server CPU/call {_micros(subject)} vs {_micros(base)}",
        )
    ]


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body


async def p2(settings: Settings) -> list[Row]:
    ids = batch_ids()
    keys = [RECORD_KEY.format(user_id) for user_id in ids]
    rounds, window, inflight = settings.rounds, settings.window, settings.batch_concurrency
    async with full_stack(settings, "p2") as (url, server), ProfileClient(server.target) as sdk:
        client = aioredis.Redis.from_url(url)
        try:
            # The store keeps each record in one string, so the baseline MGETs the very records it reads.
            size = sum(len(cast(bytes, record)) for record in await client.mget(keys))

            async def mget() -> None:
                await client.mget(keys)

            async def batch() -> None:
                await sdk.batch_get(ids)

            # Redis shares the server core: its CPU is part of what a batch costs there.
            redis_pid = int((await client.info("server"))["process_id"])

            def windowed(call: load.Call, pids: Sequence[int] = ()) -> Callable[[], Awaitable[Throughput]]:
                async def measure() -> Throughput:
                    return await load.closed_loop([call] * inflight, window, pids)

                return measure

            body = _body(
                settings, "batch", profile_pb2.BatchGetProfilesRequest(user_ids=ids).SerializeToString()
            )
            with services.echo_server(
                size, settings.workdir / "echo-mget", settings.cores.server, redis_url=url, mget_keys=keys
            ) as echo_mget:
                _checked(server.target, BATCH_GET, body)
                _checked(echo_mget.target, echo_server.METHOD, body)
                h2 = H2Window([(server.target, BATCH_GET, body)], window, inflight, [server.pid])
                h2_ceiling = H2Window(
                    [(echo_mget.target, echo_server.METHOD, body)], window, inflight, [echo_mget.pid]
                )
                measures = windowed(mget), windowed(batch, [server.pid, redis_pid])
                for measure in measures:
                    await measure()  # warm up
                mgets, batches, h2_runs, ceilings = await load.interleaved(rounds, *measures, h2, h2_ceiling)
        finally:
            await client.aclose()

    n = len(ids)
    mget_rates, sdk_rates = _rates(mgets, n), _rates(batches, n)
    h2_rates, ceiling_rates = _h2_rates(h2_runs, n), _h2_rates(ceilings, n)
    what = f"BatchGetProfiles({n}) keys/s, {inflight} in flight"
    server_busy, redis_busy = (median(window.server_cpu[i] for window in batches) for i in (0, 1))
    per_key = median(window.server_cpu[0] / window.rate for window in batches) / n
    busy = f"server busy {server_busy:.2f} cores ({per_key * 1e6:.1f} µs CPU/key), its Redis {redis_busy:.2f}"
    return [
        compared("P2", f"{what}: SDK→server→Redis vs redis.asyncio MGET of the same {n} records",
                 sdk_rates, mget_rates, "keys/s", at_least(0.5), busy),
        compared("P2", f"{what}: h2load (C) client vs MGET, server alone",
                 h2_rates, mget_rates, "keys/s", at_least(0.5), f"server CPU/key {_micros(h2_runs, n)}"),
        compared("P2", f"ceiling: a bare grpc.aio echo answering one MGET of the {n} records ({size:,} B) "
                 "per call, h2load, vs MGET",
                 ceiling_rates, mget_rates, "keys/s", note=f"server CPU/key {_micros(ceilings, n)}"),
        compared("P2", "full stack vs that ceiling (echo + one MGET), h2load",
                 h2_rates, ceiling_rates, "keys/s"),
    ]  # fmt: skip


def _split(counts: Sequence[int]) -> str:
    total = max(1, sum(counts))
    return "/".join(f"{100 * count / total:.0f}%" for count in counts)


async def p6(settings: Settings) -> list[Row]:
    rounds, window, inflight = settings.rounds, settings.window, settings.concurrency
    async with full_stack(settings, "p6") as (url, first):
        # The second server gets the other core: on two cores that is the load generator's.
        second_cores = settings.cores.client if settings.cores.pinned else settings.cores.server
        with services.profile_server(url, settings.workdir / "p6b", second_cores) as second:
            pids = [first.pid, second.pid]
            async with ProfileClient(first.target) as a, ProfileClient(second.target) as b:
                await b.get(HOT_KEY)

                async def get_a() -> None:
                    await a.get(HOT_KEY)

                async def get_b() -> None:
                    await b.get(HOT_KEY)

                async def one() -> Throughput:
                    return await load.closed_loop([get_a] * inflight, window, pids)

                async def two() -> Throughput:  # workers alternate targets: even → first, odd → second
                    return await load.closed_loop([get_a, get_b] * (inflight // 2), window, pids)

                await one(), await two()
                ones, twos = await load.interleaved(rounds, one, two)

            body = _body(settings, "get", profile_pb2.GetProfileRequest(user_id=HOT_KEY).SerializeToString())
            h2_one = H2Window([(first.target, GET, body)], window, inflight, pids)
            h2_two = H2Window(
                [(first.target, GET, body), (second.target, GET, body)], window, inflight // 2, pids
            )
            h2_ones, h2_twos = await load.interleaved(rounds, h2_one, h2_two)

    py_one, py_two = _rates(ones), _rates(twos)
    h2_one_rates, h2_two_rates = _h2_rates(h2_ones), _h2_rates(h2_twos)
    py_split = _split([sum(sum(t.counts[i::2]) for t in twos) for i in (0, 1)])
    # Each h2load sends a fixed number of calls, so their rates (not counts) show how the load spread.
    h2_split = " + ".join(f"{median(results[i].rate for results, _ in h2_twos):,.0f}" for i in (0, 1))
    cpu_two = "+".join(f"{median(t.server_cpu[i] for t in twos):.2f}" for i in (0, 1))
    h2_cpu_two = "+".join(f"{median(cpu[i] for _, cpu in h2_twos):.2f}" for i in (0, 1))
    # The target is judged with h2load: the Python SDK load generator needs most of a core itself, and on two
    # cores it shares core 1 with the second server, so its row shows the spread, not the servers' scaling.
    return [
        compared("P6", f"GetProfile, two server processes vs one (one Redis), h2load, {inflight} streams",
                 h2_two_rates, h2_one_rates, "calls/s", at_least(1.3),
                 f"calls/s per server {h2_split}; server CPU {h2_cpu_two} cores"),
        compared("P6", "the same from the Python SDK, which shares core 1 with the second server",
                 py_two, py_one, "calls/s", None,
                 f"calls split {py_split}; server CPU {cpu_two} cores"),
    ]  # fmt: skip
