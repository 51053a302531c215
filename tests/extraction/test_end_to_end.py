"""Item 7 of issue 17, as the README tells it: extract the profile slice from the demo monolith phase by
phase (legacy, shadow, dual_write + backfill, canary, primary) under a steady load of reads and writes from
several SDKs, then roll back one phase (primary -> canary) with one flag write. Every SDK sees the rollback,
no caller sees an error, and no acknowledged write is lost: at the end legacy and the microstate both hold
each user's last acknowledged write."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from microstate.client.extraction.backfill import backfill
from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.phases import Phase, PhaseGuardError, RouteSettings
from microstate.client.extraction.router import Router
from microstate.profile.v1.profile_pb2 import Profile
from tests.extraction.conftest import ProfileBehindProxy, close_extraction, open_extraction
from tests.extraction.support import RecordingObserver, monolith_view, user_profile
from tests.support.processes import ServerProcess, until

USERS = 120
SDKS = 3
"""Routers, each with its own flags client, as separate application processes would be."""
WRITERS_PER_SDK = 2
PACE = 0.02
"""Seconds between one writer's calls: about 300 calls/s in all, half of them writes."""


@dataclass
class Load:
    """Reads and writes from every SDK; each user is written by one writer only, so "the last acknowledged
    write of a user" is well defined."""

    routers: list[Router[Profile]]
    users: list[str]
    last_acknowledged: dict[str, Profile] = field(default_factory=dict)
    writes: int = 0
    reads: int = 0
    errors: list[BaseException] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def writer(self, number: int) -> None:
        router = self.routers[number % len(self.routers)]
        mine = self.users[number :: len(self.routers) * WRITERS_PER_SDK]
        chooser = random.Random(number)
        while not self.stop.is_set():
            user = chooser.choice(mine)
            try:
                if chooser.random() < 0.5:
                    wanted = user_profile(
                        user, f"{user} v{self.writes}", theme=chooser.choice(["dark", "light"])
                    )
                    await router.put(user, wanted)
                    self.last_acknowledged[user] = wanted
                    self.writes += 1
                else:
                    await router.get(user)
                    self.reads += 1
            except Exception as error:
                self.errors.append(error)
            await asyncio.sleep(PACE)  # a steady load the relay keeps up with; not a synchronisation

    def more(self, writes: int) -> Callable[[], bool]:
        """A condition: `writes` more writes have been acknowledged since now."""
        enough = self.writes + writes
        return lambda: self.writes >= enough


async def test_extract_the_profile_slice_phase_by_phase_then_roll_back(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    observer = RecordingObserver()
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, observer=observer)
    try:
        control, legacy, main = extraction.control, extraction.legacy, extraction.router
        users = [extraction.user(number) for number in range(USERS)]
        for user in users:  # the monolith before extraction
            await legacy.put(user, user_profile(user, f"{user} original"), request_id=f"seed-{user}")
        routers = [main, *[await extraction.sdk() for _ in range(SDKS - 1)]]
        load = Load(routers, users)
        load.last_acknowledged.update({user: user_profile(user, f"{user} original") for user in users})
        writers = [asyncio.create_task(load.writer(number)) for number in range(SDKS * WRITERS_PER_SDK)]

        async def everywhere(phase: Phase, subject: str = "anyone") -> None:
            await until(lambda: all(router.phase("put", subject) is phase for router in routers),
                        within=10, what=f"every SDK in {phase}")  # fmt: skip
            await until(load.more(30), within=30, what=f"load in {phase}")

        try:
            await control.move(Phase.SHADOW, settings=RouteSettings(shadow_sample=0.3, budget_ms=200))
            await everywhere(Phase.SHADOW)
            await until(lambda: len(observer.observations) > 10, within=30, what="shadow comparisons")

            await control.move(Phase.DUAL_WRITE)
            await everywhere(Phase.DUAL_WRITE)
            report = await backfill(legacy, ProfileCandidate(extraction.profiles), start=extraction.users)
            assert report.created > 0 and not report.refused

            await control.move(Phase.CANARY, canary_percent=50)
            await until(lambda: main.stats.canary_reads > 10, within=30, what="canary reads")

            async def to_primary() -> bool:  # the guard holds once the outbox is drained
                try:
                    await control.move(Phase.PRIMARY, settings=RouteSettings(budget_ms=200))
                except PhaseGuardError:
                    return False
                return True

            await until(to_primary, within=30, what="the move to primary")
            await everywhere(Phase.PRIMARY)

            moved = time.monotonic()
            rollback = await control.move(Phase.CANARY, canary_percent=50)  # one flag write
            assert rollback.previous is Phase.PRIMARY
            await until(lambda: all(router.phase("put", "anyone") is not Phase.PRIMARY for router in routers),
                        within=10, what="every SDK to see the rollback")  # fmt: skip
            seen_after = time.monotonic() - moved
            await until(load.more(60), within=30, what="load after the rollback")
        finally:
            load.stop.set()
            await asyncio.gather(*writers)

        assert load.errors == []
        assert seen_after < 10
        await until(extraction.drained, within=30, what="both outboxes to drain")
        candidate = ProfileCandidate(extraction.profiles)
        for user in users:
            assert await legacy.get(user) == load.last_acknowledged[user], user
            assert monolith_view(await candidate.get(user)) == load.last_acknowledged[user], user
        assert main.stats.candidate_errors == 0
    finally:
        await close_extraction(extraction)
