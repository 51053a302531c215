"""The Comparator as the Router's observer, on real flags and profile servers and a SQLite monolith: a
drifted field of one user in twelve is reported as a real mismatch, with both sides' latency, and nothing
else is."""

from __future__ import annotations

from pathlib import Path

from microstate.client.extraction.compare import Comparator
from microstate.client.extraction.diff import CompareRules
from microstate.client.extraction.phases import Phase, RouteSettings
from microstate.client.extraction.router import ComparisonObserver
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
