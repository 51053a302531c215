"""NC, the profile near-cache of issue 12 (`ClientOptions.near_cache`), against a profile server on Redis.

NC: a live Get (a client without the near-cache, SDK→server→Redis, one in flight) vs a near-cache hit (a
    client with it, answered in memory while its watch is live), rounds interleaved; and how long after a
    write through another client is acknowledged the cached client stops serving the old value (its
    watch's event has dropped it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from statistics import median

import redis.asyncio as aioredis

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_least
from bench.stack import HOT_KEY, Settings, sample_profile
from bench.throughput import compared
from microstate.client import ClientOptions, Liveness, NearCacheOptions, ReplicaStatus, Source
from microstate.client.errors import AlreadyExists
from microstate.client.profile.v1 import Profile, ProfileClient

WRITES_PER_ROUND = 20
"""Writes whose invalidation is timed, per round (100 in a full run)."""
WAIT = 10.0
"""Seconds any one wait may take before the figure fails."""


def _status(client: ProfileClient) -> ReplicaStatus:
    status = client.near_cache_status()
    assert status is not None, "the client has no near-cache"
    return status


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {WAIT:g} s")
        await asyncio.sleep(0)  # lets the watch's task run; polls as tightly as the loop allows


async def _cached(client: ProfileClient) -> None:
    """Read the hot key until it is served from the near-cache (the watch must cover the fill)."""
    await _until(lambda: _status(client).liveness is Liveness.LIVE, "the watch")
    deadline = time.monotonic() + WAIT
    while (await client.get(HOT_KEY)).source is not Source.CACHE:
        if time.monotonic() > deadline:
            raise RuntimeError("the hot key was never cached")


async def _store_reads(redis: aioredis.Redis) -> int:
    """Reads Redis has answered so far (a Get of a profile is one GET, a batch one MGET)."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "mget"))


async def _invalidations(
    client: ProfileClient, writer: ProfileClient, count: int
) -> tuple[list[float], list[float]]:
    """For each of `count` writes through `writer`: seconds from sending it until `client` no longer
    holds the key, and until the write was acknowledged."""
    dropped, acknowledged = [], []
    for n in range(count):
        await _cached(client)
        started = time.perf_counter()
        # The event may reach the client (on this same loop) before the writer sees its answer.
        update = asyncio.create_task(
            writer.update(Profile(user_id=HOT_KEY, locale=("en-GB", "en-US")[n % 2]), ["locale"])
        )
        await _until(lambda: _status(client).entries == 0, "the invalidation")
        dropped.append(time.perf_counter() - started)
        await update
        acknowledged.append(time.perf_counter() - started)
    return dropped, acknowledged


async def near_cache(settings: Settings) -> list[Row]:
    samples, rounds = settings.samples, settings.rounds
    cached_options = ClientOptions(near_cache=NearCacheOptions())
    with (
        services.redis(settings.cores.server) as url,
        services.profile_server(url, settings.workdir / "near-cache", settings.cores.server) as server,
    ):
        redis = aioredis.from_url(url)
        async with (
            ProfileClient(server.target) as live_client,
            ProfileClient(server.target, options=cached_options) as cached_client,
            ProfileClient(server.target) as writer,
        ):
            with contextlib.suppress(AlreadyExists):
                await writer.create(sample_profile(HOT_KEY))
            await cached_client.get(HOT_KEY)  # starts its watch
            await _cached(cached_client)
            live = functools.partial(live_client.get, HOT_KEY)
            hit = functools.partial(cached_client.get, HOT_KEY)
            await load.latencies(live, 20)
            await load.latencies(hit, samples)  # warm up: the interpreter specialises hot code
            lives, hits = await load.interleaved(
                rounds, load.sampler(live, samples), load.sampler(hit, samples * 10)
            )
            before = await _store_reads(redis)
            await load.latencies(hit, samples)
            reads_during_hits = await _store_reads(redis) - before
            if (await hit()).source is not Source.CACHE:
                raise RuntimeError("the hot key left the near-cache while it was timed")
            dropped, acknowledged = await _invalidations(cached_client, writer, WRITES_PER_ROUND * rounds)
        await redis.aclose()

    p50s = [[median(part) for part in result] for result in (lives, hits)]
    all_lives, all_hits = ([s for part in result for s in part] for result in (lives, hits))
    return [
        compared(
            "NC",
            "live Get (SDK→server→Redis, 1 in flight, no near-cache) p50 vs a near-cache hit p50",
            p50s[0],
            p50s[1],
            "s",
            at_least(100, text="≥ 100"),
            f"hit p99 {percentile(all_hits, 0.99) * 1e6:.1f} µs over {len(all_hits):,} reads;"
            f" store reads during {samples:,} more hits: {reads_during_hits};"
            f" live p99 {percentile(all_lives, 0.99) * 1e3:.2f} ms",
        ),
        Row(
            "NC",
            "write through another client sent → the cached client has dropped the old value, p50, vs"
            " the write's own acknowledgement p50",
            median(dropped),
            median(acknowledged),
            "s",
            median(dropped) / median(acknowledged),
            note=f"dropped p99 {percentile(dropped, 0.99) * 1e3:.2f} ms, max {max(dropped) * 1e3:.2f} ms"
            f" over {len(dropped)} writes (by the watch's event, loopback)",
        ),
    ]
