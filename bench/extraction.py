"""EX, incremental extraction of issue 17: what the Router's shadow mode costs the legacy path, and how fast
a rollback reaches every SDK.

EX1: what shadow adds to the legacy path's p99 (target ≤ 2%). Measured two ways:
     - the bound (the figure): the Router's own work per read in shadow, 0.1% of reads handed to a real
       Comparator in a ShadowProcess on the servers' core, over the legacy adapter's own get, both on a
       constant in-memory answer (mean per read, reads in alternating blocks), as a share of the p99 of the
       legacy path (the SQLite monolith). Every unsampled read gains exactly this work, so the p99 moves
       by no more; the sampled 0.1% also pay the hand-off (the 100% row says how much).
     - directly: Router.get p99 in shadow vs the legacy phase over the demo monolith in SQLite (sequential
       reads, rounds interleaved, the median of the per-round p99 ratios), with an A/A row (two legacy-phase
       Routers) that shows how far such a p99 ratio can be trusted on the machine. A/B of where the compared
       reads run: the Router's shadow thread, the caller's loop, and (1%) a helper process on the caller's
       core; 0% (the routing alone), 1% and 100%; and 1% with each legacy read behind a 1 ms round trip (a
       sleep), as a monolith's database across a network would be.
EX2: the same with the microstate slow (a TCP proxy holds each chunk 100 ms: every shadow read overruns its
     budget) and down (killed): the bound (target ≤ 2%) and the direct p99 ratio; and, with every read
     shadowed, the reads that raised to the caller (target 0).
EX3: rollbacks (primary -> dual_write, one guarded flag write each) under writes from 8 SDKs (Routers with
     a flags client each, so each has its own SyncFlags stream): seconds from the write's acknowledgement
     until each SDK routes by it, p99 over SDKs x rollbacks (target ≤ 1 s); and acknowledged writes lost
     across them (after the outboxes drain, legacy and the microstate both hold each last write).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from statistics import fmean, median
from typing import Any

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_most
from bench.stack import Settings
from microstate.client import ClientOptions
from microstate.client.extraction import demo
from microstate.client.extraction.candidates import ProfileCandidate, open_profile_candidate
from microstate.client.extraction.compare import Comparator, ComparisonStats
from microstate.client.extraction.diff import CompareRules
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import Phase, PhaseControl, PhaseGuardError, RouteSettings
from microstate.client.extraction.router import Router
from microstate.client.extraction.shadow import ShadowStats
from microstate.client.extraction.shadow_process import ShadowProcess
from microstate.client.extraction.sql import SqlAdapter
from microstate.client.flags import FlagsClient
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.processes import ServerProcess

USERS = 1_000
CANDIDATE_OPTIONS = ClientOptions(timeout=2.0)
SETUP_OPTIONS = ClientOptions(timeout=30.0)
"""For the bench's own setup calls: a first connection on a loaded machine can take seconds."""
SLOW_LINK = 0.1
"""Seconds the slow link holds each chunk: a call takes over 200 ms, past the shadow budget of 100 ms."""
BLOCK = 100
"""Reads per block of the A/B alternation: short, so the rest of the machine's load hits both sides alike,
and long enough that a shadow read's off-path work rarely spills into the other side's block."""
SDKS = 8
FLIPS = 10
"""Rollbacks (and moves forward again) timed in EX3 (20 flag writes)."""
WAIT = 15.0


FIGURE = RouteSettings(shadow_sample=0.001)
"""The figure's sampled share: 0.1% of reads also read the microstate (see RESULTS.md for 1%)."""
ONE_PERCENT = RouteSettings(shadow_sample=0.01)
NONE_SAMPLED = RouteSettings(shadow_sample=0.0)
EVERY_READ = RouteSettings(shadow_sample=1.0)
RULES = CompareRules.of(ignore=["etag", "create_time", "update_time", "embedding"])
"""What only the microstate answers with."""


NETWORK = 0.001
"""The round trip of a monolith's database across a network (EX1's last row)."""


class _NetworkedLegacy:
    """The SQLite monolith as if across a network: a read first waits NETWORK seconds (a sleep: for the
    caller's process a database round trip is waiting, not work)."""

    def __init__(self, inner: SqlAdapter[Profile]) -> None:
        self._inner = inner

    async def get(self, key: str) -> Profile | None:
        await asyncio.sleep(NETWORK)
        return await self._inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _InMemoryLegacy:
    """The legacy side as a constant answer: what a read then costs is the Router's own work."""

    def __init__(self) -> None:
        self._answer = Profile(user_id="user-00000", display_name="User 0", locale="en-GB")

    async def get(self, key: str) -> Profile | None:
        return self._answer


@dataclass
class Shadowed:
    """A Router on its own route (its own flags client) with a Comparator as its observer."""

    router: Router[Profile]
    comparator: Comparator
    settings: RouteSettings

    @property
    def where(self) -> str:
        shadow = self.router.shadow
        if isinstance(shadow, ShadowProcess):
            return "in a helper process on " + ("the servers' core" if shadow.cpus else "the caller's core")
        return "on the shadow thread" if shadow is not None else "on the caller's loop"

    def comparison(self) -> ComparisonStats:
        if isinstance(self.router.shadow, ShadowProcess):
            return self.router.shadow.comparison()
        return self.comparator.stats()


def _share(subject: Shadowed) -> str:
    return f"{subject.settings.shadow_sample * 100:g}%"


def _compared(subject: Shadowed) -> str:
    operations = subject.comparison().operations  # one snapshot: a helper process's is a file read
    compared = sum(operation.compared for operation in operations)
    failures = sum(sum(operation.candidate_errors.values()) for operation in operations)
    dropped = "" if subject.router.shadow is None else f", dropped {subject.router.shadow.stats.dropped}"
    return f"pairs compared {compared}, candidate failures {failures}{dropped}"


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {WAIT:g} s")
        await asyncio.sleep(0.001)


def _open_candidate(target: str) -> contextlib.AbstractAsyncContextManager[ProfileCandidate]:
    return open_profile_candidate(target, options=CANDIDATE_OPTIONS)


def _comparator() -> Comparator:
    return Comparator({"get": RULES})


@dataclass(frozen=True)
class Design:
    """Where a Router's compared shadow reads run: its shadow thread, or a helper process on `cpus`
    (None: the caller's cores)."""

    target: str
    """The microstate, as the worker reaches it."""
    in_process: bool = False
    cpus: frozenset[int] | None = None

    def thread(self) -> Callable[[], contextlib.AbstractAsyncContextManager[ProfileCandidate]] | None:
        return None if self.in_process else functools.partial(_open_candidate, self.target)

    def process(self) -> ShadowProcess[Profile] | None:
        if not self.in_process:
            return None
        return ShadowProcess(
            functools.partial(_open_candidate, self.target), _comparator, Profile, cpus=self.cpus
        )


@contextlib.asynccontextmanager
async def _slice(
    name: str,
    phase: Phase,
    flags_target: str,
    profiles: ProfileClient,
    legacy: SqlAdapter[Profile] | _NetworkedLegacy | _InMemoryLegacy,
    settings: RouteSettings,
    design: Design | None = None,
) -> AsyncIterator[Shadowed]:
    """`design`: where the compared reads run (None: on the caller's loop)."""
    flags = FlagsClient(flags_target)
    await flags.start()
    control = PhaseControl(flags, name)
    await control.current()
    for step in [Phase.SHADOW, Phase.DUAL_WRITE, Phase.CANARY, Phase.PRIMARY][: phase.rank]:
        await control.move(step, settings=settings, force=True)
    comparator = _comparator()
    router = Router(
        name,
        flags=flags,
        legacy=legacy,
        outbox=legacy,
        candidate=ProfileCandidate(profiles),
        parse=Profile.FromString,
        observer=comparator,
        relay=False,
        shadow_candidate=design.thread() if design is not None else None,
        shadow_worker=design.process() if design is not None else None,
    )
    await router.start()
    if isinstance(router.shadow, ShadowProcess):
        shadow = router.shadow
        await _until(lambda: shadow.ready, f"{name}'s helper process ready")
    await _until(lambda: router.phase("get", "anyone") is phase, f"{name} in {phase}")
    try:
        yield Shadowed(router, comparator, settings)
    finally:
        await router.close()
        await flags.close()


async def _until_drained(legacy: SqlAdapter[Profile], direction: Direction) -> None:
    deadline = time.monotonic() + 60
    while (await legacy.counts(direction)).pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {direction} outbox did not drain within 60 s")
        await asyncio.sleep(0.01)  # polling the outbox, a bench's wait


async def _drained(legacy: SqlAdapter[Profile]) -> None:
    for direction in Direction:
        await _until_drained(legacy, direction)


def _all_in(routers: list[Router[Profile]], phase: Phase) -> bool:
    return all(router.phase("put", "anyone") is phase for router in routers)


def _reader(subject: Shadowed, errors: list[BaseException]) -> Callable[[], Awaitable[object]]:
    chooser = random.Random(7)
    router = subject.router

    async def read() -> object:
        try:
            return await router.get(f"user-{chooser.randrange(USERS):05d}")
        except Exception as error:
            errors.append(error)
            return None

    return read


async def _p99_ratio(
    settings: Settings, subject: Shadowed, baseline: Shadowed, count: int
) -> tuple[float, float, float, int, float]:
    """Median per-round p99 ratio, the two p99s (medians), the reads that raised to the caller, and the
    mean latency the subject adds to a read. Each round takes `count` reads of each side in alternating
    blocks of BLOCK, after a warm-up."""
    errors: list[BaseException] = []
    subject_p99, baseline_p99, added = [], [], []
    async for subject_run, baseline_run in _rounds(
        settings, _reader(subject, errors), _reader(baseline, errors), count
    ):
        subject_p99.append(percentile(subject_run, 0.99))
        baseline_p99.append(percentile(baseline_run, 0.99))
        added.append(fmean(subject_run) - fmean(baseline_run))
    return (
        load.paired_ratio(subject_p99, baseline_p99),
        median(subject_p99),
        median(baseline_p99),
        len(errors),
        median(added),
    )


async def _added_work(settings: Settings, subject: Shadowed, count: int) -> float:
    """Seconds the subject's Router adds to a read over its legacy adapter's own get, both on a constant
    in-memory answer: the median over rounds of the difference of means, reads in alternating blocks."""
    legacy = subject.router._legacy  # the adapter the Router reads through: the bare legacy path
    keys = random.Random(7)

    async def bare() -> object:
        return await legacy.get(f"user-{keys.randrange(USERS):05d}")

    added = [
        fmean(routed) - fmean(direct)
        async for routed, direct in _rounds(settings, _reader(subject, []), bare, count)
    ]
    return median(added)


async def _rounds(
    settings: Settings,
    subject: Callable[[], Awaitable[object]],
    baseline: Callable[[], Awaitable[object]],
    count: int,
) -> AsyncIterator[list[list[float]]]:
    """After a warm-up, 2 x rounds of `count` latencies of each read, taken in alternating blocks of BLOCK:
    [subject's, baseline's] per round."""
    reads = [subject, baseline]
    for read in reads:
        await load.latencies(read, BLOCK)
    for _ in range(2 * settings.rounds):
        yield await load.block_interleaved(reads, count, BLOCK)


async def extraction(settings: Settings) -> list[Row]:
    workdir = settings.workdir / "extraction"
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "monolith.db"
    demo.create_sqlite(str(database))
    legacy = SqlAdapter.from_url(f"sqlite:///{database}", demo.UsersCodec(), demo.TABLE)
    await legacy.ensure_outbox()
    for number in range(USERS):
        user = f"user-{number:05d}"
        await legacy.put(
            user, Profile(user_id=user, display_name=f"User {number}", locale="en-GB"), request_id=user
        )
    cores = settings.cores.server
    flags_store, profile_store = f"sqlite:///{workdir / 'flags.db'}", f"sqlite:///{workdir / 'profile.db'}"
    rows: list[Row] = []
    try:
        with (
            services.microstate_server("flags", flags_store, workdir / "flags", cores) as flags_server,
            services.profile_server(profile_store, workdir / "profile", cores) as profile_server,
        ):
            async with ProfileClient(profile_server.target, options=SETUP_OPTIONS) as seeding:
                for number in range(0, USERS, 2):  # the microstate holds half the users
                    user = f"user-{number:05d}"
                    await seeding.create(Profile(user_id=user, display_name=f"User {number}", locale="en-GB"))
            async with ProfileClient(profile_server.target, options=CANDIDATE_OPTIONS) as profiles:
                rows += await _shadow_rows(settings, flags_server.target, profiles, legacy, profile_server)
        with (
            services.microstate_server("flags", flags_store, workdir / "flags-2", cores) as flags_server,
            services.profile_server(profile_store, workdir / "profile-2", cores) as profile_server,
        ):
            rows += await _rollback_rows(flags_server.target, profile_server.target, legacy)
    finally:
        await legacy.close()
    return rows


async def _shadow_rows(
    settings: Settings,
    flags_target: str,
    profiles: ProfileClient,
    legacy: SqlAdapter[Profile],
    profile_server: ServerProcess,
) -> list[Row]:
    rows = []
    long, short = settings.samples * 20, settings.samples
    """Reads per round and side: many where a p99 is the figure, fewer where only errors are counted."""
    thread = Design(profile_server.target)
    process = Design(profile_server.target, in_process=True, cpus=settings.cores.server)
    """The process's own core: the servers', not the caller's (a process on the caller's core is A/B'd)."""
    same_core = Design(profile_server.target, in_process=True)

    def shadow(name: str, share: RouteSettings, design: Design | None) -> Any:
        return _slice(name, Phase.SHADOW, flags_target, profiles, legacy, share, design)

    async def measure(subject: Shadowed, baseline: Shadowed, goal: Any, count: int) -> Row:
        compared = "compared " + subject.where if subject.settings.shadow_sample else "compared: routing only"
        measurement = (
            f"Router.get p99 in shadow, {_share(subject)} of reads also read the microstate and {compared}, "
            "vs the legacy phase, SQLite monolith, 1 in flight"
        )
        return _ratio_row(measurement, subject, await _p99_ratio(settings, subject, baseline, count), goal)

    # The figures first, with no other Router in the process: the A/B designs' threads, channels and
    # flag streams would add their own jitter to both sides' p99.
    async with (
        _slice("ex-legacy", Phase.LEGACY, flags_target, profiles, legacy, FIGURE) as baseline,
        _slice("ex-legacy-again", Phase.LEGACY, flags_target, profiles, legacy, FIGURE) as again,
        shadow("ex-process-figure", FIGURE, process) as sampled,
        shadow("ex-shadow-none", NONE_SAMPLED, process) as unsampled,
        shadow("ex-process-all", EVERY_READ, process) as every_read,
        _slice(
            "ex-memory", Phase.SHADOW, flags_target, profiles, _InMemoryLegacy(), FIGURE, process
        ) as bound,
    ):
        direct = await measure(sampled, baseline, None, long)
        noise = await _p99_ratio(settings, again, baseline, long)
        rows += [direct, await measure(unsampled, baseline, None, long)]
        rows.append(
            Row(
                "EX1",
                "A/A: Router.get p99 in the legacy phase vs another Router in the legacy phase: how far the "
                "p99 rows above can be trusted on this machine",
                noise[1],
                noise[2],
                "s",
                noise[0],
                note=f"mean {noise[4] * 1e6:+.1f} µs a read",
            )
        )
        assert direct.baseline is not None
        legacy_p99 = direct.baseline
        rows.append(_bound_row("EX1", "", await _added_work(settings, bound, long), legacy_p99))
        async with (
            shadow("ex-thread-figure", FIGURE, thread) as sampled_on_thread,
            shadow("ex-loop-figure", FIGURE, None) as sampled_on_loop,
            shadow("ex-process-1", ONE_PERCENT, process) as one_percent,
            shadow("ex-same-core-1", ONE_PERCENT, same_core) as one_percent_same_core,
            shadow("ex-thread-1", ONE_PERCENT, thread) as one_percent_on_thread,
            shadow("ex-loop-1", ONE_PERCENT, None) as one_percent_on_loop,
            shadow("ex-thread-all", EVERY_READ, thread) as every_read_on_thread,
            shadow("ex-loop-all", EVERY_READ, None) as every_read_on_loop,
        ):
            for subject, count in (
                (sampled_on_thread, long),
                (sampled_on_loop, long),
                (one_percent, long),
                (one_percent_same_core, long),
                (one_percent_on_thread, long),
                (one_percent_on_loop, long),
                (every_read, short),
                (every_read_on_thread, short),
                (every_read_on_loop, short),
            ):
                rows.append(await measure(subject, baseline, None, count))
        networked = _NetworkedLegacy(legacy)
        async with (
            _slice("ex-net-legacy", Phase.LEGACY, flags_target, profiles, networked, FIGURE) as far_baseline,
            _slice(
                "ex-net-process-1", Phase.SHADOW, flags_target, profiles, networked, ONE_PERCENT, process
            ) as far,
            _slice(
                "ex-net-loop-1", Phase.SHADOW, flags_target, profiles, networked, ONE_PERCENT
            ) as far_on_loop,
        ):
            for subject, goal in ((far, None), (far_on_loop, None)):
                measured = await _p99_ratio(settings, subject, far_baseline, short * 2)
                rows.append(
                    _ratio_row(
                        f"the same, 1% compared {subject.where}, the monolith's read behind a "
                        f"{NETWORK * 1e3:g} ms network round trip (a sleep before each SQLite read)",
                        subject,
                        measured,
                        goal,
                    )
                )
        with services.slow_link(profile_server, SLOW_LINK, settings.workdir / "slow-link") as link:
            slowly = Design(link.target, in_process=True, cpus=settings.cores.server)
            async with (
                ProfileClient(link.target, options=CANDIDATE_OPTIONS) as slow,
                _slice(
                    "ex-slow-figure", Phase.SHADOW, flags_target, slow, legacy, FIGURE, slowly
                ) as slow_sampled,
                _slice(
                    "ex-slow-all", Phase.SHADOW, flags_target, slow, legacy, EVERY_READ, slowly
                ) as slow_all,
                _slice(
                    "ex-slow-memory", Phase.SHADOW, flags_target, slow, _InMemoryLegacy(), FIGURE, slowly
                ) as slow_bound,
            ):
                ratio, p99, base, _, _ = await _p99_ratio(settings, slow_sampled, baseline, long)
                state = f"slow (+{SLOW_LINK * 1e3:g} ms per chunk each way: every shadow read overruns)"
                rows.append(_degraded_row(state, slow_sampled, ratio, p99, base))
                added = await _added_work(settings, slow_bound, long)
                rows.append(_bound_row("EX2", "the microstate slow", added, legacy_p99))
                slow_errors = await _caller_errors(settings, slow_all, short)
                slow_overruns = _worker(slow_all).candidate_overruns
        profile_server.stop()
        ratio, p99, base, _, _ = await _p99_ratio(settings, sampled, baseline, long)
        rows.append(_degraded_row("down (killed)", sampled, ratio, p99, base))
        rows.append(
            _bound_row("EX2", "the microstate down", await _added_work(settings, bound, long), legacy_p99)
        )
        down_errors = await _caller_errors(settings, every_read, short)
        failed = _worker(every_read).candidate_errors
        rows.append(
            Row(
                "EX2",
                "reads that raised to the caller, every read shadowed (helper process), the microstate "
                "slow / down",
                float(slow_errors + down_errors),
                None,
                "errors",
                None,
                at_most(0, on="value"),
                f"slow {slow_errors} (candidate overruns {slow_overruns}), down {down_errors} "
                f"(candidate errors {failed})",
            )
        )
    return rows


def _ratio_row(
    measurement: str, subject: Shadowed, measured: tuple[float, float, float, int, float], goal: Any
) -> Row:
    ratio, p99, base, errors, added = measured
    note = f"caller errors {errors}; {_compared(subject)}; mean {added * 1e6:+.1f} µs a read"
    return Row("EX1", measurement, p99, base, "s", ratio, goal, note)


BOUND = (
    "what shadow (0.1% handed to the helper process) adds to each read: the Router's work per read over its "
    "adapter's own get (in-memory answer, mean), as a share of the legacy path's p99"
)
BOUND_NOTE = (
    "each unsampled read gains this work, a sampled one (0.1%) the hand-off too: p99 moves by no more, "
    "unless the hand-off alone lifts a read past it (the 100% row)"
)


def _bound_row(figure: str, state: str, added: float, legacy_p99: float) -> Row:
    """The figure: what shadow adds to each read (`_added_work`) as a share of the legacy path's p99."""
    what, note = (f"the same, {state}", "") if state else (BOUND, BOUND_NOTE)
    return Row(figure, what, added, legacy_p99, "s", added / legacy_p99, at_most(0.02), note)


def _worker(subject: Shadowed) -> ShadowStats:
    assert subject.router.shadow is not None
    return subject.router.shadow.stats


def _degraded_row(state: str, subject: Shadowed, ratio: float, p99: float, base: float) -> Row:
    return Row(
        "EX2",
        f"the same, {_share(subject)} compared {subject.where}, the microstate {state}",
        p99,
        base,
        "s",
        ratio,
        None,
        _compared(subject),
    )


async def _caller_errors(settings: Settings, subject: Shadowed, count: int) -> int:
    errors: list[BaseException] = []
    read = _reader(subject, errors)
    for _ in range(settings.rounds * count):
        await read()

    def judged() -> bool:
        stats = _worker(subject)  # a ShadowProcess's stats are a snapshot: read them anew
        return stats.observed == stats.submitted

    await _until(judged, "every shadow read judged")
    return len(errors)


async def _rollback_rows(flags_target: str, profile_target: str, legacy: SqlAdapter[Profile]) -> list[Row]:
    profiles = ProfileClient(profile_target, options=CANDIDATE_OPTIONS)
    admin = FlagsClient(flags_target)
    control = PhaseControl(admin, "ex-rollback", outbox=legacy)
    await control.current()
    for step in (Phase.SHADOW, Phase.DUAL_WRITE, Phase.PRIMARY):
        await control.move(step, force=True)
    clients = [FlagsClient(flags_target) for _ in range(SDKS)]
    for client in clients:
        await client.start()
    routers = [
        Router(
            "ex-rollback",
            flags=client,
            legacy=legacy,
            outbox=legacy,
            candidate=ProfileCandidate(profiles),
            parse=Profile.FromString,
            relay=index == 0,
        )
        for index, client in enumerate(clients)
    ]
    await routers[0].start()
    last: dict[str, Profile] = {}
    stop, writing = asyncio.Event(), asyncio.Event()
    writing.set()

    async def writer(index: int) -> None:
        users = [f"rb-{index}-{number}" for number in range(20)]
        chooser = random.Random(index)
        while not stop.is_set():
            await writing.wait()
            user = chooser.choice(users)
            wanted = Profile(user_id=user, display_name=f"v{chooser.random():.6f}", locale="en-GB")
            await routers[index].put(user, wanted)
            last[user] = wanted  # acknowledged
            await asyncio.sleep(0.005)  # a steady load, not a synchronisation

    writers = [asyncio.create_task(writer(index)) for index in range(SDKS)]
    rollbacks: list[float] = []
    """Per SDK and rollback: seconds from the flag write's acknowledgement until that SDK routes by it."""
    try:
        await _until(lambda: _all_in(routers, Phase.PRIMARY), "primary everywhere")
        for _ in range(FLIPS):
            await asyncio.sleep(0.2)  # writes in primary, reverse entries pending: a rollback under load
            await control.move(Phase.DUAL_WRITE)  # the rollback: one guarded flag write
            rollbacks += await _seen_by_each(routers, Phase.DUAL_WRITE)
            await asyncio.sleep(0.2)  # writes in dual_write, forward entries pending
            # Forward again. Its guard waits for the forward outbox to drain, which a steady stream of
            # dual writes never lets happen: pause the writers for the move, as an operator would.
            writing.clear()
            while True:
                await _until_drained(legacy, Direction.FORWARD)
                with contextlib.suppress(PhaseGuardError):  # a write in flight at the pause landed since
                    await control.move(Phase.PRIMARY)
                    break
            await _seen_by_each(routers, Phase.PRIMARY)
            writing.set()
    finally:
        stop.set()
        writing.set()
        failures = [r for r in await asyncio.gather(*writers, return_exceptions=True) if r is not None]
    await _drained(legacy)
    candidate = ProfileCandidate(profiles)
    lost = 0
    for user, wanted in last.items():
        in_legacy = await legacy.get(user)
        in_microstate = await candidate.get(user)
        same = in_microstate is not None and in_microstate.display_name == wanted.display_name
        lost += int(in_legacy != wanted or not same)
    for router in routers:
        await router.close()
    for client in [*clients, admin]:
        await client.close()
    await profiles.close()
    return [
        Row(
            "EX3",
            f"rollback primary -> dual_write (one flag write) seen by each of {SDKS} SDKs (own flags "
            f"client each), p99 over {len(rollbacks)} SDK x rollback",
            percentile(rollbacks, 0.99),
            None,
            "s",
            None,
            at_most(1.0, on="value", text="≤ 1 s"),
            f"median {median(rollbacks) * 1e3:.0f} ms, max {max(rollbacks) * 1e3:.0f} ms",
        ),
        Row(
            "EX3",
            f"acknowledged writes lost across {FLIPS} rollbacks (legacy and microstate checked)",
            float(lost),
            None,
            "writes",
            None,
            at_most(0, on="value"),
            f"{len(last)} users written by {SDKS} SDKs; writes that raised {len(failures)}",
        ),
    ]


async def _seen_by_each(routers: list[Router[Profile]], phase: Phase) -> list[float]:
    """Seconds until each router routes by `phase`, from now (polled every millisecond)."""
    started = time.monotonic()
    seen: dict[int, float] = {}
    deadline = started + WAIT
    while len(seen) < len(routers):
        now = time.monotonic()
        for index, router in enumerate(routers):
            if index not in seen and router.phase("put", "anyone") is phase:
                seen[index] = now - started
        if now > deadline:
            raise RuntimeError(f"{len(routers) - len(seen)} SDKs not in {phase} within {WAIT:g} s")
        await asyncio.sleep(0.001)
    return list(seen.values())
