"""Route phases live in the flags microstate: a move is one etag-guarded flag write, validate_only writes
nothing and says what would move, forward moves are guarded, and canary is a sticky split per subject."""

from __future__ import annotations

import asyncio

import pytest

from microstate.client.errors import Aborted
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import Phase, PhaseGuardError, RouteSettings
from microstate.client.extraction.router import Router
from microstate.profile.v1.profile_pb2 import Profile
from tests.extraction.conftest import Extraction
from tests.extraction.support import user_profile
from tests.support.processes import until


async def test_a_move_is_one_guarded_flag_write_and_validate_only_writes_nothing(
    extraction: Extraction,
) -> None:
    control, router = extraction.control, extraction.router
    before = await control.current()
    checked = await control.move(Phase.SHADOW, validate_only=True)
    assert (checked.previous, checked.phase, checked.problems) == (Phase.LEGACY, Phase.SHADOW, [])
    assert checked.reassigned_fraction == 1.0
    assert (await control.current()).revision == before.revision  # nothing written
    await control.move(Phase.SHADOW, settings=RouteSettings(shadow_sample=0.5))
    await until(lambda: router.phase("get", "anyone") is Phase.SHADOW, within=10, what="shadow everywhere")
    with pytest.raises(Aborted):
        await control.move(Phase.DUAL_WRITE, etag=before.etag)  # a concurrent move is refused, not lost
    skipping = await control.move(Phase.PRIMARY, validate_only=True)
    assert skipping.problems == ["shadow -> primary skips a phase"]
    with pytest.raises(PhaseGuardError):
        await control.move(Phase.PRIMARY)
    assert router.phase("put", "anyone") is Phase.SHADOW


async def test_primary_waits_for_the_forward_outbox_to_drain(extraction: Extraction) -> None:
    control = extraction.control
    await control.move(Phase.SHADOW)
    await control.move(Phase.DUAL_WRITE)
    user = extraction.user(1)
    await extraction.legacy.put(user, user_profile(user, "queued"), request_id="q1", outbox=Direction.FORWARD)
    assert (await control.move(Phase.PRIMARY, validate_only=True)).problems == [
        "1 forward outbox entries are not yet applied to the microstate"
    ]
    await until(extraction.drained, within=15, what="the outbox to drain")
    assert (await control.move(Phase.PRIMARY)).phase is Phase.PRIMARY
    # a rollback is always allowed, straight back to any earlier phase
    assert (await control.move(Phase.SHADOW)).previous is Phase.PRIMARY


async def test_with_wait_primary_needs_only_what_was_pending_applied_not_an_empty_outbox(
    extraction: Extraction,
) -> None:
    """Under steady dual writes the forward outbox is never empty; `wait` lets the move through once every
    entry pending at the check is applied, and refuses it, counting them, while no relay applies them."""
    control, router = extraction.control, extraction.router
    await control.move(Phase.SHADOW)
    await control.move(Phase.DUAL_WRITE)
    await until(lambda: router.phase("put", "anyone") is Phase.DUAL_WRITE, within=10, what="dual_write")
    assert router.relay is not None
    await router.relay.close()  # nothing is applied: the entries pending at the check stay pending
    for number in range(3):
        user = extraction.user(number)
        await router.put(user, user_profile(user, "queued"))
    refused = await control.move(Phase.PRIMARY, validate_only=True, wait=0.3)
    assert refused.problems == [
        "3 forward outbox entries are not yet applied to the microstate (waited 0.3 s)"
    ]

    router.relay.start()
    writing = True

    async def steady_writes() -> int:
        written = 0
        while writing:
            user = extraction.user(100 + written % 20)
            await router.put(user, user_profile(user, f"write {written}"))
            written += 1
        return written

    writer = asyncio.create_task(steady_writes())
    try:
        moved = await control.move(Phase.PRIMARY, wait=15)
    finally:
        writing = False
        written = await writer
    assert (moved.phase, moved.problems) == (Phase.PRIMARY, [])
    assert written > 0


async def test_canary_is_a_sticky_split_on_the_subject(extraction: Extraction) -> None:
    control, router = extraction.control, extraction.router
    await control.move(Phase.SHADOW)
    await control.move(Phase.DUAL_WRITE)
    await control.move(Phase.CANARY, canary_percent=30)
    users = [f"user-{number}" for number in range(2000)]
    await until(lambda: _share(router, users) > 0, within=10, what="the canary flag")
    first = {user for user in users if router.phase("get", user) is Phase.CANARY}
    assert 0.25 < len(first) / len(users) < 0.35
    assert {router.phase("get", user) for user in users} == {Phase.CANARY, Phase.DUAL_WRITE}
    widened = await control.move(Phase.CANARY, canary_percent=60, validate_only=True)
    assert widened.previous is Phase.CANARY and 0.25 < widened.reassigned_fraction <= 0.35
    await control.move(Phase.CANARY, canary_percent=60)
    await until(lambda: _share(router, users) > 0.5, within=10, what="the wider canary")
    second = {user for user in users if router.phase("get", user) is Phase.CANARY}
    assert first < second  # everyone admitted before stays admitted: nobody flaps


def _share(router: Router[Profile], users: list[str]) -> float:
    return sum(router.phase("get", user) is Phase.CANARY for user in users) / len(users)
