"""The Router's shadow worker, on real flags and profile servers and a SQLite monolith: compared reads go
to a thread of its own (its own loop and gRPC channel), the caller never waits on it, a full queue drops
and counts, the Comparator's stats arrive on the caller's side, and `close()` stops the thread."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from microstate.client.extraction.candidates import ProfileCandidate, open_profile_candidate
from microstate.client.extraction.compare import Comparator
from microstate.client.extraction.diff import CompareRules
from microstate.client.extraction.phases import Phase, RouteSettings
from microstate.client.extraction.shadow import ShadowWorker
from microstate.client.extraction.shadow_process import ShadowProcess
from microstate.client.profile.v1 import Profile
from tests.extraction.conftest import (
    CANDIDATE_OPTIONS,
    Extraction,
    ProfileBehindProxy,
    close_extraction,
    open_extraction,
)
from tests.extraction.support import RecordingObserver, user_profile
from tests.support.processes import ServerProcess, until

RULES = CompareRules.of(ignore=["etag", "create_time", "update_time", "embedding"])


class ThreadNoting(Comparator):
    """A Comparator that notes which threads observed."""

    def __init__(self) -> None:
        super().__init__({"get": RULES})
        self.threads: set[int] = set()

    def observe(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        self.threads.add(threading.get_ident())
        super().observe(*args, **kwargs)  # type: ignore[arg-type]


def compared(comparator: Comparator) -> int:
    return sum(operation.compared for operation in comparator.stats().operations)


async def with_shadow_thread(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy, observer: Comparator
) -> Extraction:
    opener = functools.partial(open_profile_candidate, profile.target, options=CANDIDATE_OPTIONS)
    return await open_extraction(
        tmp_path, flags_server.target, profile.target, observer=observer, shadow_candidate=opener
    )


async def in_shadow(extraction: Extraction, users: int, *, in_microstate: bool) -> list[str]:
    """`users` written through the Router (and to the microstate too if `in_microstate`), then the route
    moved to shadow with every read compared."""
    written = [extraction.user(number) for number in range(users)]
    for user in written:
        await extraction.router.put(user, user_profile(user, "legacy " + user))
        if in_microstate:
            await extraction.profiles.create(user_profile(user, "legacy " + user))
    await extraction.control.move(Phase.SHADOW, settings=RouteSettings(shadow_sample=1.0))
    await until(lambda: extraction.router.phase("get", "x") is Phase.SHADOW, within=10, what="shadow")
    return written


async def test_compared_reads_run_on_the_worker_thread_and_their_stats_arrive(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    comparator = ThreadNoting()
    extraction = await with_shadow_thread(tmp_path, flags_server, profile, comparator)
    router = extraction.router
    try:
        users = await in_shadow(extraction, 10, in_microstate=True)
        await extraction.profiles.update(user_profile(users[3], "drifted"), ["display_name"], etag="")
        answers = [await router.get(user) for user in users]
        assert answers == [user_profile(user, "legacy " + user) for user in users]
        await until(lambda: compared(comparator) == len(users), within=15, what="every read compared")
        assert threading.get_ident() not in comparator.threads and len(comparator.threads) == 1
        assert [(v.path, v.diffs, v.real) for v in comparator.stats().fields] == [("display_name", 1, True)]
        assert router.shadow is not None
        assert (router.shadow.stats.submitted, router.shadow.stats.dropped) == (len(users), 0)
        assert router.stats.shadow_reads == 0  # nothing compared on the caller's loop
    finally:
        await close_extraction(extraction)
    assert router.shadow._thread is not None and not router.shadow._thread.is_alive()


async def test_candidate_errors_never_reach_the_caller(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    comparator = Comparator({"get": RULES})
    extraction = await with_shadow_thread(tmp_path, flags_server, profile, comparator)
    router = extraction.router
    try:
        users = await in_shadow(extraction, 5, in_microstate=False)
        profile.proxy.partition()  # every candidate read fails (at its deadline or the budget)
        try:
            answers = [await router.get(user) for user in users]
            assert answers == [user_profile(user, "legacy " + user) for user in users]
            assert router.shadow is not None
            stats = router.shadow.stats
            await until(lambda: stats.observed == len(users), within=15, what="every failure observed")
            assert stats.candidate_errors + stats.candidate_overruns == len(users)
            [operation] = comparator.stats().operations
            assert sum(operation.candidate_errors.values()) == len(users) and operation.compared == 0
        finally:
            profile.proxy.heal()
    finally:
        await close_extraction(extraction)


async def test_a_full_queue_drops_and_counts_without_blocking_the_caller(
    profile: ProfileBehindProxy,
) -> None:
    """The worker cannot take work until its candidate opens (held shut here): the caller's hand-overs
    beyond the queue's capacity return at once, dropped and counted; once it opens, the queued ones arrive."""
    gate = threading.Event()

    @asynccontextmanager
    async def held_shut() -> AsyncIterator[ProfileCandidate]:
        await asyncio.to_thread(gate.wait)
        async with open_profile_candidate(profile.target, options=CANDIDATE_OPTIONS) as candidate:
            yield candidate

    observer = RecordingObserver()
    worker = ShadowWorker(held_shut, observer, Profile.FromString, capacity=3, in_flight=1)
    legacy = user_profile("nobody-here", "legacy").SerializeToString()
    try:
        began = time.monotonic()
        accepted = [worker.submit("shadow", "get", "nobody-here", legacy, 0.001, 5.0) for _ in range(10)]
        assert accepted == [True] * 3 + [False] * 7
        assert time.monotonic() - began < 5.0  # it returned while the worker could take nothing
        assert (worker.stats.submitted, worker.stats.dropped) == (3, 7)
        assert observer.observations == []
        gate.set()
        await until(lambda: worker.stats.observed == 3, within=15, what="the queued reads observed")
        assert [o.legacy for o in observer.observations] == [user_profile("nobody-here", "legacy")] * 3
        assert [o.candidate for o in observer.observations] == [None] * 3  # no such record in the microstate
        assert all(o.candidate_error is None for o in observer.observations)
    finally:
        gate.set()
        await worker.close()
    assert worker._thread is not None and not worker._thread.is_alive()
    assert worker.submit("shadow", "get", "late", None, 0.001, 5.0) is False
    assert worker.stats.dropped == 8


def rules_comparator() -> Comparator:
    """Built in the helper process (module level: it is pickled by reference)."""
    return Comparator({"get": RULES})


async def test_the_helper_process_compares_and_its_stats_arrive(profile: ProfileBehindProxy) -> None:
    """ShadowProcess: sends beyond what the socket holds return at once, dropped and counted (here while
    the child is still starting); the child's Comparator stats and counters come back to the caller's side."""
    stored = user_profile(f"process-{time.monotonic_ns()}", "same")
    async with open_profile_candidate(profile.target, options=CANDIDATE_OPTIONS) as candidate:
        await candidate.put(stored.user_id, stored, request_id=stored.user_id)
    opener = functools.partial(open_profile_candidate, profile.target, options=CANDIDATE_OPTIONS)
    worker = ShadowProcess(opener, rules_comparator, Profile)
    try:
        bulky = user_profile("absent", "x" * 60_000).SerializeToString()
        began = time.monotonic()
        sent = [worker.submit("shadow", "bulky", "absent", bulky, 0.001, 30.0) for _ in range(200)]
        assert time.monotonic() - began < 5.0 and sent.count(False) > 0  # 12 MB cannot fit in a buffer
        assert worker.stats.dropped == sent.count(False)
        await until(lambda: worker.ready, within=60, what="the helper process ready")
        same = stored.SerializeToString()
        assert all([worker.submit("shadow", "get", stored.user_id, same, 0.001, 30.0) for _ in range(5)])
        await until(
            lambda: worker.stats.observed == 5 + sent.count(True), within=60, what="every pair observed"
        )
        stats = worker.stats
        assert (stats.submitted, stats.dropped) == (5 + sent.count(True), sent.count(False))
        operations = {operation.operation: operation for operation in worker.comparison().operations}
        get = operations["get"]
        assert (get.compared, get.differing, get.candidate_errors) == (5, 0, {})
    finally:
        await worker.close()
    assert worker._process.exitcode == 0  # it stopped when asked, not killed at close()'s deadline
    assert worker.submit("shadow", "get", "late", None, 0.001, 5.0) is False


async def test_canary_reads_go_to_the_helper_process_when_the_router_has_no_observer(
    tmp_path: Path, flags_server: ServerProcess, profile: ProfileBehindProxy
) -> None:
    """With only a ShadowProcess to compare, a sampled canary read's legacy answer is handed to it (which
    reads the microstate again), counted per phase there: none is read for nothing."""
    opener = functools.partial(open_profile_candidate, profile.target, options=CANDIDATE_OPTIONS)
    worker = ShadowProcess(opener, rules_comparator, Profile)
    extraction = await open_extraction(tmp_path, flags_server.target, profile.target, shadow_worker=worker)
    try:
        await until(lambda: worker.ready, within=60, what="the helper process ready")
        users = await in_shadow(extraction, 4, in_microstate=True)
        await extraction.control.move(Phase.DUAL_WRITE, force=True)
        await extraction.control.move(Phase.CANARY, canary_percent=100, force=True)
        await until(
            lambda: extraction.router.phase("get", users[0]) is Phase.CANARY, within=10, what="canary"
        )
        for user in users:
            assert (await extraction.router.get(user)) is not None
        await until(lambda: worker.stats.observed == 4, within=60, what="every canary pair observed")
        [canary] = [each for each in worker.comparison().operations if each.phase == "canary"]
        assert (canary.compared, canary.differing) == (4, 0)
        assert extraction.router.stats.canary_compared == 4
    finally:
        await close_extraction(extraction)
