"""The Comparator as the Router's observer, on real flags and profile servers and a SQLite monolith: a
drifted field of one user in twelve is reported as a real mismatch, with both sides' latency, and nothing
else is."""

from __future__ import annotations

import asyncio
import functools
import gc
from pathlib import Path
from typing import Any

from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.compare import Comparator
from microstate.client.extraction.diff import CompareRules
from microstate.client.extraction.phases import Phase, RouteSettings
from microstate.client.extraction.router import ComparisonObserver, Router
from microstate.client.profile.v1 import Profile
from tests.extraction.conftest import ProfileBehindProxy, close_extraction, open_extraction
from tests.extraction.support import user_profile
from tests.support.processes import ServerProcess, until

RULES = CompareRules.of(ignore=["etag", "create_time", "update_time", "embedding"])
"""What only the microstate answers with."""


async def test_the_router_feeds_the_comparator_off_the_request_path(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    comparator = Comparator({"get": RULES}, phase_of=lambda operation: "shadow")
    observer: ComparisonObserver = comparator  # what the Router takes
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, observer=observer)
    try:
        users = [extraction.user(number) for number in range(12)]
        for user in users:
            await extraction.router.put(user, user_profile(user, "legacy " + user))
            await extraction.profiles.create(user_profile(user, "legacy " + user))
        await extraction.profiles.update(user_profile(users[0], "drifted"), ["display_name"], etag="")
        await extraction.control.move(
            Phase.SHADOW, settings=RouteSettings(shadow_sample=1.0, noise_sample=1.0)
        )
        await until(lambda: extraction.router.phase("get", "x") is Phase.SHADOW, within=10, what="shadow")
        for user in users:
            await extraction.router.get(user)

        def compared() -> int:
            return sum(operation.compared for operation in comparator.stats().operations)

        await until(lambda: compared() == len(users), within=10, what="every shadow read compared")
        stats = comparator.stats()
        assert [(v.path, v.diffs, v.real) for v in stats.fields] == [("display_name", 1, True)]
        [operation] = stats.operations
        assert (operation.phase, operation.operation, operation.candidate_errors) == ("shadow", "get", {})
        assert operation.legacy_p50 > 0 and operation.candidate_p50 > 0
        [sample] = stats.samples
        assert "drifted" not in repr(sample) and users[0] not in repr(sample)
    finally:
        await close_extraction(extraction)


async def test_counters_are_keyed_by_the_phase_the_router_read_in(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    """No phase_of is configured: the phase of each pair is the one the Router routed the read by, and a
    canary subject's read (answered by the microstate) is compared with legacy too."""
    comparator = Comparator({"get": RULES})
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, observer=comparator)
    router, control = extraction.router, extraction.control
    try:
        users = [extraction.user(number) for number in range(6)]
        for user in users:
            await router.put(user, user_profile(user, "legacy " + user))
            await extraction.profiles.create(user_profile(user, "legacy " + user))
        await extraction.profiles.update(user_profile(users[0], "drifted"), ["display_name"], etag="")
        every_read = RouteSettings(shadow_sample=1.0, budget_ms=2000)

        def compared(phase: str) -> int:
            return sum(op.compared for op in comparator.stats().operations if op.phase == phase)

        def all_compared(phase: str) -> bool:
            return compared(phase) == len(users)

        def routes_by(phase: Phase) -> bool:
            return router.phase("get", "x") is phase

        for phase in (Phase.SHADOW, Phase.DUAL_WRITE):
            await control.move(phase, settings=every_read)
            await until(functools.partial(routes_by, phase), within=10, what=str(phase))
            for user in users:
                await router.get(user)
            await until(functools.partial(all_compared, phase), within=10, what=f"{phase} compared")
        await control.move(Phase.CANARY, canary_percent=100, settings=every_read)
        await until(lambda: router.phase("get", users[0]) is Phase.CANARY, within=10, what="canary")
        answers = [await router.get(user) for user in users]
        assert answers[0] is not None and answers[0].display_name == "drifted"  # the microstate answered
        await until(functools.partial(all_compared, "canary"), within=10, what="canary compared")

        stats = comparator.stats()
        assert sorted((op.phase, op.compared, op.differing) for op in stats.operations) == [
            ("canary", 6, 1),
            ("dual_write", 6, 1),
            ("shadow", 6, 1),
        ]
        assert all(op.legacy_p50 > 0 and op.candidate_p50 > 0 for op in stats.operations)
        assert sorted((v.phase, v.path, v.diffs) for v in stats.mismatches()) == [
            ("canary", "display_name", 1),
            ("dual_write", "display_name", 1),
            ("shadow", "display_name", 1),
        ]
        assert sorted(sample.phase for sample in stats.samples) == ["canary", "dual_write", "shadow"]
        assert router.stats.canary_compared == len(users)
    finally:
        await close_extraction(extraction)


class FailingComparator(Comparator):
    def observe(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the comparator broke")


async def test_a_failing_comparator_never_reaches_the_caller(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    extraction = await open_extraction(
        tmp_path, flags_server.target, profile.target, observer=FailingComparator({"get": RULES})
    )
    router = extraction.router
    try:
        users = [extraction.user(number) for number in range(5)]
        for user in users:
            await router.put(user, user_profile(user, "legacy " + user))
        await extraction.control.move(Phase.SHADOW, settings=RouteSettings(shadow_sample=1.0))
        await until(lambda: router.phase("get", "x") is Phase.SHADOW, within=10, what="shadow")
        answers = [await router.get(user) for user in users]
        assert answers == [user_profile(user, "legacy " + user) for user in users]
        await until(lambda: router.stats.observer_errors == len(users), within=10, what="every failure")
    finally:
        await close_extraction(extraction)


async def test_closing_leaves_no_shadow_read_behind(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    """A Router closed right after a shadowed read (its comparison not yet started) cancels the candidate
    read too: nothing keeps running, and no failure is left unretrieved for asyncio to log."""
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target)
    user = extraction.user(1)
    await extraction.router.put(user, user_profile(user, "legacy"))
    await extraction.control.move(Phase.SHADOW, settings=RouteSettings(shadow_sample=1.0))
    router = Router(  # no relay: close() does not yield before it cancels
        extraction.slice_name,
        flags=extraction.flags,
        legacy=extraction.legacy,
        outbox=extraction.legacy,
        candidate=ProfileCandidate(extraction.profiles),
        parse=Profile.FromString,
        observer=Comparator({"get": RULES}),
        relay=False,
    )
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: logged.append(context))

    def candidate_reads() -> list[asyncio.Task[Any]]:
        names = ("ProfileCandidate.get", "_OffPathRead._timed")
        return [task for task in asyncio.all_tasks() if any(name in repr(task.get_coro()) for name in names)]

    try:
        await until(lambda: router.phase("get", user) is Phase.SHADOW, within=10, what="shadow")
        profile.proxy.partition()  # the candidate read fails, but only at its 2 s deadline
        try:
            assert await router.get(user) == user_profile(user, "legacy")
            await router.close()
            assert candidate_reads() == []
        finally:
            profile.proxy.heal()
        gc.collect()
        assert [context["message"] for context in logged] == []
    finally:
        loop.set_exception_handler(None)
        await close_extraction(extraction)
