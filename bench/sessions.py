"""S1-S3, the session figures of issue 11, on one Redis shared by a profile server and a session server.

S1: ValidateSession p50 vs GetProfile p50, SDK→server→Redis, one call in flight, rounds interleaved.
S2: a cached validation (`accept_cached_for`, answered in memory) vs a plain dict lookup, as P3 does for
    snapshot hits.
S3: RevokeUserSessions of a user holding 10,000 sessions: the store writes Redis sees during the call (each
    store write is one Lua script), and its latency next to revoking a user who holds one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from statistics import median

import redis.asyncio as aioredis

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_most
from bench.stack import HOT_KEY, Settings, sample_profile
from bench.throughput import compared
from microstate.client.errors import AlreadyExists, Unauthenticated
from microstate.client.profile.v1 import ProfileClient
from microstate.client.session.v1 import IssuedSession, SessionClient, Source

MANY = 10_000
"""Sessions held by the user S3 revokes."""
CREATING = 32
"""Creates in flight while S3's sessions are made."""
SAMPLED = 100
"""Of S3's tokens, how many are validated after the revocation (each must be refused)."""
SCOPES = ["infer"]
HOUR = 3600.0


async def _script_calls(redis: aioredis.Redis) -> int:
    """Lua scripts Redis has run so far: the Redis store makes every write one script (and reads none,
    but for listings)."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def _create_many(sessions: SessionClient, user_id: str, count: int) -> list[IssuedSession]:
    gate = asyncio.Semaphore(CREATING)

    async def create() -> IssuedSession:
        async with gate:
            return await sessions.create(user_id, scopes=SCOPES, idle_ttl=HOUR, max_ttl=HOUR)

    return list(await asyncio.gather(*(create() for _ in range(count))))


async def _until_cached(sessions: SessionClient, token: str) -> None:
    """The first cached validations are live: the cache keeps answers once its revocation watch is up."""
    deadline = time.monotonic() + 10
    while (await sessions.validate(token, SCOPES, accept_cached_for=30)).source is not Source.CACHE:
        if time.monotonic() > deadline:
            raise RuntimeError("validations were never cached")
        await asyncio.sleep(0.01)


async def _refused(sessions: SessionClient, issued: list[IssuedSession]) -> int:
    refused = 0
    for each in issued:
        try:
            await sessions.validate(each.token)
        except Unauthenticated:
            refused += 1
    return refused


async def sessions(settings: Settings) -> list[Row]:
    samples, rounds = settings.samples, settings.rounds
    with (
        services.redis(settings.cores.server) as url,
        services.profile_server(url, settings.workdir / "s-profile", settings.cores.server) as profile,
        services.session_server(url, settings.workdir / "s-session", settings.cores.server) as session,
    ):
        redis = aioredis.from_url(url)
        try:
            async with ProfileClient(profile.target) as profiles, SessionClient(session.target) as sessions:
                with contextlib.suppress(AlreadyExists):
                    await profiles.create(sample_profile(HOT_KEY))
                token = (await sessions.create("bench", scopes=SCOPES, idle_ttl=HOUR, max_ttl=HOUR)).token

                # S1
                get = functools.partial(profiles.get, HOT_KEY)
                validate = functools.partial(sessions.validate, token, SCOPES)
                for call in (get, validate):
                    await load.latencies(call, 20)  # warm up
                gets, validations = await load.interleaved(
                    rounds, load.sampler(get, samples), load.sampler(validate, samples)
                )

                # S2
                await _until_cached(sessions, token)
                hit = functools.partial(sessions.validate, token, SCOPES, accept_cached_for=30)
                await load.latencies(hit, samples)  # warm up: the interpreter specialises hot code
                hits = await load.latencies(hit, samples * 10)
                if (await hit()).source is not Source.CACHE:
                    raise RuntimeError("the cached validation was evicted while it was timed")
                table = {token: await hit()}
                lookups = load.sync_latencies(functools.partial(table.__getitem__, token), len(hits))

                # S3
                started = time.monotonic()
                many = await _create_many(sessions, "bench-many", MANY)
                made_in = time.monotonic() - started
                await sessions.create("bench-one", scopes=SCOPES)
                before = await _script_calls(redis)
                await sessions.revoke_user("bench-many")
                writes = await _script_calls(redis) - before
                refused = await _refused(sessions, many[:: max(1, MANY // SAMPLED)])
                revoke_many = functools.partial(sessions.revoke_user, "bench-many")
                revoke_one = functools.partial(sessions.revoke_user, "bench-one")
                ones, manys = await load.interleaved(
                    rounds, load.sampler(revoke_one, samples // 5), load.sampler(revoke_many, samples // 5)
                )
        finally:
            await redis.aclose()

    p50s = [[median(part) for part in result] for result in (gets, validations, ones, manys)]
    all_gets, all_validations, all_ones, all_manys = (
        [s for part in result for s in part] for result in (gets, validations, ones, manys)
    )
    hit_p50, lookup_p50 = median(hits), median(lookups)
    return [
        compared(
            "S1",
            "ValidateSession p50 vs GetProfile p50, SDK→server→Redis (same Redis), 1 in flight",
            p50s[1],
            p50s[0],
            "s",
            at_most(1.2),
            f"p99 {percentile(all_validations, 0.99) * 1e3:.2f} ms"
            f" vs {percentile(all_gets, 0.99) * 1e3:.2f} ms; {len(all_validations):,} calls each",
        ),
        Row(
            "S2",
            "cached validate (accept_cached_for, no network) median vs a plain dict lookup",
            hit_p50,
            lookup_p50,
            "s",
            hit_p50 / lookup_p50,
            at_most(5e-6, on="value", text="hit ≤ 5 µs"),
            f"p99 {percentile(hits, 0.99) * 1e6:.1f} µs over {len(hits):,} sequential validations",
        ),
        Row(
            "S3",
            f"RevokeUserSessions of a user holding {MANY:,} sessions: store writes (Redis write scripts)",
            writes,
            None,
            "writes",
            target=at_most(1, on="value", text="1 write"),
            note=f"{refused} of {len(many[:: max(1, MANY // SAMPLED)])} sampled tokens refused after it;"
            f" its {MANY:,} sessions made in {made_in:.1f} s",
        ),
        compared(
            "S3",
            f"RevokeUserSessions p50, user with {MANY:,} sessions vs user with 1",
            p50s[3],
            p50s[2],
            "s",
            at_most(5e-3, on="value", text="≤ 5 ms"),
            f"p99 {percentile(all_manys, 0.99) * 1e3:.2f} ms vs {percentile(all_ones, 0.99) * 1e3:.2f} ms",
        ),
    ]
