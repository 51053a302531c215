"""P3 (snapshot hit latency) and P4 (reads while the server dies), both on one client whose server is killed.

Readers run while the server is SIGKILLed. Every call is timed and classified: live, served from the
snapshot after a failed call (the transition), or served from the snapshot because the breaker is open.
Once the breaker is open, P3 times sequential hits (no network: the plan is answered in memory) against a
plain dict lookup and against the live Get measured before the kill.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_least, at_most
from bench.stack import HOT_KEY, Settings, sample_profile
from microstate.client import BreakerState, ClientOptions, Read, Source
from microstate.client.errors import CircuitOpenError
from microstate.client.profile.v1 import Profile, ProfileClient

READERS = 8
LIVE_BEFORE_KILL = 0.5
"""Seconds of live reads before the kill."""
OPEN_PHASE = 2.0
"""Seconds of reads after the breaker opened; under the default reset timeout (5 s), so no probe falls in."""


@dataclass(frozen=True)
class Call:
    started: float
    seconds: float
    read: Read[Profile]

    @property
    def kind(self) -> str:
        if self.read.source is Source.LIVE:
            return "live"
        if isinstance(self.read.fallback_reason, CircuitOpenError):
            return "open"
        return type(self.read.fallback_reason).__name__


async def _readers(client: ProfileClient, stop: asyncio.Event) -> list[Call]:
    calls: list[Call] = []
    clock = time.perf_counter

    async def reader() -> None:
        while not stop.is_set():
            started = clock()
            read = await client.get(HOT_KEY)
            calls.append(Call(started, clock() - started, read))
            await asyncio.sleep(0)  # a read answered from memory never yields: let the others run

    await asyncio.gather(*(reader() for _ in range(READERS)))
    return calls


async def _kill_while_reading(client: ProfileClient, kill: Callable[[], None]) -> tuple[list[Call], float]:
    stop = asyncio.Event()
    readers = asyncio.create_task(_readers(client, stop))
    await asyncio.sleep(LIVE_BEFORE_KILL)
    killed_at = time.perf_counter()
    kill()
    deadline = killed_at + 10
    # The breaker has no event to wait on: poll its state (the readers run meanwhile).
    while client.breaker_state is not BreakerState.OPEN and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    await asyncio.sleep(OPEN_PHASE)
    stop.set()
    return await readers, killed_at


async def fallback(settings: Settings) -> list[Row]:
    samples = settings.samples * settings.rounds
    budget = settings.latency_budget
    options = ClientOptions(latency_budget=budget)
    with (
        services.redis(settings.cores.server) as url,
        services.profile_server(url, settings.workdir / "fallback", settings.cores.server) as server,
    ):
        async with ProfileClient(server.target, options=options) as client:
            await client.create(sample_profile(HOT_KEY))
            live_read = await client.get(HOT_KEY)  # fills the snapshot
            live = await load.latencies(functools.partial(client.get, HOT_KEY), samples)
            calls, killed_at = await _kill_while_reading(client, server.process.kill)
            if client.breaker_state is not BreakerState.OPEN:
                raise RuntimeError("the breaker did not open after the kill")
            snapshot_read = functools.partial(client.get, HOT_KEY)
            await load.latencies(snapshot_read, samples)  # warm up: the interpreter specialises hot code
            hits = await load.latencies(snapshot_read, samples * 10)
            table = {HOT_KEY: live_read}
            lookups = load.sync_latencies(functools.partial(table.__getitem__, HOT_KEY), samples * 10)

    after_kill = [call for call in calls if call.started + call.seconds >= killed_at]
    first_open = min((call.started for call in after_kill if call.kind == "open"), default=float("inf"))
    transition = [call for call in after_kill if call.started < first_open]
    opened = [call.seconds for call in after_kill if call.kind == "open"]
    worst = max(call.seconds for call in transition)
    kinds = Counter(call.kind for call in transition)
    hit, lookup, live_p50 = median(hits), median(lookups), median(live)
    return [
        Row(
            "P3",
            "snapshot hit, breaker open (no network), median vs a plain dict lookup",
            hit,
            lookup,
            "s",
            hit / lookup,
            at_most(5e-6, on="value", text="hit ≤ 5 µs"),
            f"p99 {percentile(hits, 0.99) * 1e6:.1f} µs over {len(hits):,} sequential reads",
        ),
        Row(
            "P3",
            "live Get (SDK→server→Redis, 1 in flight) median vs the snapshot hit",
            live_p50,
            hit,
            "s",
            live_p50 / hit,
            at_least(100, text="≥ 100"),
            f"live p99 {percentile(live, 0.99) * 1e3:.2f} ms",
        ),
        Row(
            "P4",
            f"server killed: snapshot reads once the breaker is open, p50 ({READERS} readers)",
            median(opened),
            None,
            "s",
            note=f"{len(opened):,} reads, max {max(opened) * 1e6:.0f} µs",
        ),
        Row(
            "P4",
            "the same, p99",
            percentile(opened, 0.99),
            None,
            "s",
            target=at_most(50e-6, on="value", text="≤ 50 µs"),
        ),
        Row(
            "P4",
            "worst single call from the kill until the breaker opened, vs its latency budget",
            worst,
            budget,
            "s",
            worst / budget,
            at_most(1.0),
            "transition: "
            + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
            + f"; breaker open {(first_open - killed_at) * 1e3:.0f} ms after the kill",
        ),
    ]
