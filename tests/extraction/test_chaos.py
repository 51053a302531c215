"""Dual writes while the microstate is killed again and again: afterwards every legacy-acknowledged write is
exactly applied or dead-lettered (none lost, none counted twice), and the microstate matches legacy.

The default run kills it twice; `-m chaos` runs longer with more kills."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import Phase
from microstate.client.extraction.relay import OutboxRelay
from microstate.profile.v1.profile_pb2 import Profile
from tests.extraction.conftest import Extraction, ProfileBehindProxy
from tests.extraction.support import monolith_view, user_profile
from tests.support.processes import until

WRITERS = 4
KEYS = 40


@dataclass
class Load:
    acknowledged: int = 0
    refused_by_microstate: int = 0
    """Acknowledged legacy writes the microstate will refuse (a theme it does not know)."""
    failed: int = 0


async def _write_until(extraction: Extraction, stop: asyncio.Event, load: Load, seed: int) -> None:
    chooser = random.Random(seed)
    while not stop.is_set():
        user = extraction.user(chooser.randrange(KEYS))
        try:
            if chooser.random() < 0.1:
                await extraction.router.delete(user)
            elif chooser.random() < 0.03:
                bad = f"{extraction.users}bad-{seed}-{load.acknowledged}"  # never written validly
                await extraction.router.put(bad, user_profile(bad, "refused", theme="purple"))
                load.refused_by_microstate += 1
            else:
                await extraction.router.put(user, user_profile(user, f"v{chooser.random():.6f}"))
        except Exception:
            load.failed += 1
            continue
        load.acknowledged += 1


def _beyond(relay: OutboxRelay[Profile], retries: int) -> Callable[[], bool]:
    return lambda: relay.retries > retries


def _more(load: Load, writes: int) -> Callable[[], bool]:
    enough = load.acknowledged + writes
    return lambda: load.acknowledged >= enough


async def _chaos(extraction: Extraction, profile: ProfileBehindProxy, kills: int, between: int) -> None:
    await extraction.control.move(Phase.SHADOW)
    await extraction.control.move(Phase.DUAL_WRITE)
    await until(lambda: extraction.router.phase("put", "x") is Phase.DUAL_WRITE, within=10, what="dual_write")
    relay = extraction.router.relay
    assert relay is not None
    load, stop = Load(), asyncio.Event()
    writers = [asyncio.create_task(_write_until(extraction, stop, load, seed)) for seed in range(WRITERS)]
    try:
        for _ in range(kills):
            await until(_more(load, between), within=30, what=f"{between} writes between kills")
            met = _beyond(relay, relay.retries)
            profile.kill()  # SIGKILL, under load
            await until(met, within=30, what="the relay to meet the outage")
            profile.start()  # a new server on the same data (from this thread: it supervises the server)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert load.failed == 0  # legacy never failed: the microstate's outages are not the caller's
    await until(extraction.drained, within=60, what="the outbox to drain after the chaos")
    forward = await extraction.legacy.counts(Direction.FORWARD)
    assert forward.appended == load.acknowledged
    assert forward.applied + forward.dead_lettered == load.acknowledged
    assert forward.dead_lettered == load.refused_by_microstate  # only the refused: no outage dead-lettered
    candidate = ProfileCandidate(extraction.profiles)
    for number in range(KEYS):
        user = extraction.user(number)
        assert monolith_view(await candidate.get(user)) == await extraction.legacy.get(user), user


async def test_dual_writes_survive_the_microstate_being_killed(
    extraction: Extraction, profile: ProfileBehindProxy
) -> None:
    await _chaos(extraction, profile, kills=2, between=150)


@pytest.mark.chaos
async def test_dual_writes_survive_many_kills(extraction: Extraction, profile: ProfileBehindProxy) -> None:
    await _chaos(extraction, profile, kills=12, between=600)
