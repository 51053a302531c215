"""The SDK's latency budget under faults: known keys are read once live, then, while the fault lasts, every
read of them must come from its snapshot within the budget (plus a margin), never waiting for the deadline.
"""

from __future__ import annotations

import dataclasses
import time

from microstate.client import BreakerOptions, ClientOptions
from microstate.client.profile.v1 import Profile, ProfileClient, Source
from tests.chaos import recovery

LATENCY_BUDGET = 0.5
MARGIN = 1.0
"""Added to the budget in timing assertions: the machine is shared, and the budget is what is tested, not
the scheduler. A read that waited for its deadline (TIMEOUT) would still fail."""
TIMEOUT = 10.0
KNOWN = [f"known-{n}" for n in range(5)]
ROUNDS = 3
"""Reads of every known key while the fault lasts: the circuit breaker opens on the way (after 5 failed
reads by default), and reads must come back from snapshots both before and after."""

FAST = {"breaker": BreakerOptions(reset_timeout=1.0), "max_reconnect_backoff": 1.0}
"""The short tests' recovery settings; the chaos runs keep the SDK's defaults (5 s each)."""


def budget_options(target: str, **changes: object) -> ClientOptions:
    """Snapshots (on by default), the latency budget, and round_robin over `target`'s addresses."""
    options = ClientOptions(
        target=target,
        timeout=TIMEOUT,
        latency_budget=LATENCY_BUDGET,
        channel_options=(("grpc.lb_policy_name", "round_robin"),),
    )
    return dataclasses.replace(options, **changes)  # type: ignore[arg-type]


def settings(changes: dict[str, object]) -> str:
    """How the report names the client's recovery settings."""
    return "fast options" if changes else "SDK defaults"


async def read_known_live(client: ProfileClient) -> dict[str, Profile]:
    """Create the KNOWN keys and read each live, so each has a snapshot; what was created."""
    created = {key: await client.create(Profile(user_id=key, display_name=key)) for key in KNOWN}
    for key in KNOWN:
        assert (await client.get(key)).source is Source.LIVE
    return created


async def snapshot_reads_within_budget(client: ProfileClient, created: dict[str, Profile]) -> float:
    """ROUNDS reads of each KNOWN key, each from its snapshot within the budget; the slowest, in seconds."""
    slowest = 0.0
    for _ in range(ROUNDS):
        for key in KNOWN:
            read, took = await recovery.timed(client.get(key))
            assert read.source is Source.SNAPSHOT and read.stale, read
            assert read.value == created[key]
            assert took < LATENCY_BUDGET + MARGIN, f"a snapshot read took {took:.2f}s"
            slowest = max(slowest, took)
    return slowest


async def seconds_to_live_read(client: ProfileClient) -> float:
    """Seconds from now until `client` reads a KNOWN key live again."""

    async def live() -> bool:
        return (await client.get(KNOWN[0])).source is Source.LIVE

    return await recovery.seconds_until(live, since=time.monotonic(), within=30, what="a live read again")
