"""What the Router does in each phase, against real flags and profile servers and a real SQLite monolith."""

from __future__ import annotations

import asyncio

from microstate.client.extraction.backfill import backfill
from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import Phase, RouteSettings
from microstate.client.extraction.router import CandidateBudgetExceeded
from tests.extraction.conftest import Extraction, ProfileBehindProxy, close_extraction, open_extraction
from tests.extraction.support import RecordingObserver, monolith_view, user_profile
from tests.support.processes import ServerProcess, until

ALWAYS = RouteSettings(shadow_sample=1.0, budget_ms=300)


async def move_to(extraction: Extraction, phase: Phase, **options: object) -> None:
    """Move through the phases up to `phase` and wait until this SDK routes by it."""
    order = [Phase.SHADOW, Phase.DUAL_WRITE, Phase.CANARY, Phase.PRIMARY]
    for step in order[: order.index(phase) + 1]:
        await extraction.control.move(step, **options)  # type: ignore[arg-type]
    expected = Phase.DUAL_WRITE if phase is Phase.CANARY else phase
    await until(
        lambda: extraction.router.phase("put", "someone") is expected, within=10, what=f"phase {phase}"
    )


async def test_shadow_answers_from_legacy_and_compares_off_path(
    tmp_path: object, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    observer = RecordingObserver()
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, observer=observer)  # type: ignore[arg-type]
    try:
        users = [extraction.user(number) for number in range(12)]
        for user in users:
            await extraction.router.put(user, user_profile(user, "legacy " + user))
        for user in users[:6]:  # the microstate holds half of them, one differing
            await extraction.profiles.create(user_profile(user, "legacy " + user))
        await extraction.profiles.update(user_profile(users[0], "drifted"), ["display_name"], etag="")
        await move_to(extraction, Phase.SHADOW, settings=ALWAYS)
        answers = [await extraction.router.get(user) for user in users]
        assert answers == [user_profile(user, "legacy " + user) for user in users]
        await until(lambda: len(observer.observations) == len(users), within=10, what="every comparison")
        by_user = {monolith_view(seen.legacy).user_id: seen for seen in observer.observations}  # type: ignore[union-attr]
        assert monolith_view(by_user[users[0]].candidate).display_name == "drifted"  # type: ignore[union-attr]
        assert [monolith_view(by_user[user].candidate) for user in users[1:6]] == answers[1:6]
        assert all(
            by_user[user].candidate is None and by_user[user].candidate_error is None for user in users[6:]
        )
        assert all(seen.candidate_seconds is not None for seen in observer.observations)
    finally:
        await close_extraction(extraction)


async def test_shadow_never_fails_the_caller_with_the_microstate_slow_or_down(
    tmp_path: object, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    observer = RecordingObserver()
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, observer=observer)  # type: ignore[arg-type]
    try:
        user = extraction.user(1)
        await extraction.router.put(user, user_profile(user, "only in legacy"))
        await move_to(extraction, Phase.SHADOW, settings=RouteSettings(shadow_sample=1.0, budget_ms=50))
        profile.proxy.partition()  # the microstate never answers: slow without bound
        try:
            answers = await asyncio.gather(*(extraction.router.get(user) for _ in range(40)))
            await until(lambda: len(observer.observations) == 40, within=10, what="the overruns observed")
        finally:
            profile.proxy.heal()
        assert answers == [user_profile(user, "only in legacy")] * 40
        assert all(
            isinstance(seen.candidate_error, CandidateBudgetExceeded) for seen in observer.observations
        )
        assert extraction.router.stats.candidate_overruns == 40
        profile.kill()  # down: connection refused
        try:
            answers = [await extraction.router.get(user) for _ in range(20)]
            await until(lambda: len(observer.observations) == 60, within=10, what="the failures observed")
        finally:
            profile.start()
        assert answers == [user_profile(user, "only in legacy")] * 20
        assert all(seen.candidate_error is not None for seen in observer.observations[40:])
    finally:
        await close_extraction(extraction)


async def test_dual_writes_reach_the_microstate_and_backfill_copies_the_rest(extraction: Extraction) -> None:
    router, legacy = extraction.router, extraction.legacy
    old = [extraction.user(number) for number in range(20)]
    for user in old:
        await router.put(user, user_profile(user, "before dual writes"))
    await move_to(extraction, Phase.DUAL_WRITE)
    new = [extraction.user(number) for number in range(20, 30)]
    for user in new:
        await router.put(user, user_profile(user, "during dual writes"))
    for user in old[:5]:
        await router.put(user, user_profile(user, "updated during dual writes"))
    await router.delete(old[5])
    bad = extraction.user(99)
    await router.put(bad, user_profile(bad, "a theme the microstate refuses", theme="purple"))
    report = await backfill(legacy, ProfileCandidate(extraction.profiles), start=extraction.users)
    assert report.scanned == 30 and report.created + report.existing == 29 and list(report.refused) == [bad]
    await until(extraction.drained, within=20, what="the outbox to drain")
    forward = await legacy.counts(Direction.FORWARD)
    assert (forward.appended, forward.applied, forward.dead_lettered) == (17, 16, 1)
    [dead] = await legacy.dead_letters(Direction.FORWARD)
    assert dead.key == bad and "pref.theme" in dead.last_error
    for user in [*old, *new]:
        in_legacy = await legacy.get(user)
        in_microstate = await ProfileCandidate(extraction.profiles).get(user)
        if user == old[5]:
            assert in_legacy is None and in_microstate is None
        elif user != bad:
            assert monolith_view(in_microstate) == in_legacy, user


async def test_canary_subjects_read_the_microstate_and_fall_back_to_legacy(
    extraction: Extraction, profile: ProfileBehindProxy
) -> None:
    router = extraction.router
    user = extraction.user(1)
    await move_to(extraction, Phase.DUAL_WRITE)
    await router.put(user, user_profile(user, "written"))
    await until(extraction.drained, within=20, what="the write relayed")
    await extraction.profiles.update(
        user_profile(user, "only the microstate has this"), ["display_name"], etag=""
    )
    await extraction.control.move(Phase.CANARY, canary_percent=100, settings=RouteSettings(budget_ms=200))
    await until(lambda: router.phase("get", user) is Phase.CANARY, within=10, what="canary for the user")
    assert (await router.get(user)).display_name == "only the microstate has this"  # type: ignore[union-attr]
    profile.proxy.partition()
    try:
        fallen_back = await router.get(user)
    finally:
        profile.proxy.heal()
    assert fallen_back == user_profile(user, "written")
    assert router.stats.canary_fallbacks == 1


async def test_primary_keeps_legacy_current_and_a_rollback_loses_nothing(extraction: Extraction) -> None:
    router, legacy = extraction.router, extraction.legacy
    user = extraction.user(1)
    await move_to(extraction, Phase.DUAL_WRITE)
    await extraction.control.move(Phase.PRIMARY)
    await until(lambda: router.phase("put", user) is Phase.PRIMARY, within=10, what="primary")
    stored = await router.put(user, user_profile(user, "written in primary"))
    assert stored.etag  # the microstate answered
    await until(extraction.drained, within=20, what="the reverse outbox to drain")
    assert await legacy.get(user) == user_profile(user, "written in primary")
    await extraction.control.move(Phase.DUAL_WRITE)  # the rollback: one flag write
    await until(lambda: router.phase("put", user) is Phase.DUAL_WRITE, within=10, what="the rollback")
    assert await router.get(user) == user_profile(user, "written in primary")
    await router.put(user, user_profile(user, "after the rollback"))
    await until(extraction.drained, within=20, what="the forward outbox to drain")
    assert monolith_view(await ProfileCandidate(extraction.profiles).get(user)) == user_profile(
        user, "after the rollback"
    )
