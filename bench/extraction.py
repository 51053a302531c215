"""EX, incremental extraction of issue 17: what the Router's shadow mode costs the legacy path, and how fast
a rollback reaches every SDK.

EX1: Router.get in shadow (1% and 100% of reads mirrored to the microstate, concurrently, off the request
     path) vs the same Router.get in the legacy phase, over the demo monolith in SQLite: p99 of sequential
     reads, rounds interleaved (the ratio is the median of the per-round p99 ratios). Target ≤ 1.02.
EX2: the same with the microstate slow (a TCP proxy adds 50 ms to each of its chunks) and down (killed):
     p99 ratio, and the reads that raised to the caller (target 0).
EX3: a rollback (primary -> dual_write and back, one flag write each) reaches every SDK (8 routers, each
     with its own flags client): seconds from the write's acknowledgement until the last SDK routes by it,
     p99 over the flips (target ≤ 1 s); and acknowledged writes lost across the flips (a writer on every
     SDK throughout; after the outboxes drain, legacy and the microstate both hold each last write).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from statistics import median

from bench import load, services
from bench.load import percentile
from bench.report import Row, at_most
from bench.stack import Settings
from microstate.client import ClientOptions
from microstate.client.extraction import demo
from microstate.client.extraction.candidates import ProfileCandidate
from microstate.client.extraction.legacy import Direction
from microstate.client.extraction.phases import Phase, PhaseControl, PhaseGuardError, RouteSettings
from microstate.client.extraction.router import Router
from microstate.client.extraction.sql import SqlAdapter
from microstate.client.flags import FlagsClient
from microstate.client.profile.v1 import Profile, ProfileClient
from tests.support.tcp_proxy import TcpProxy

USERS = 1_000
SDKS = 8
FLIPS = 10
"""Rollbacks (and moves forward again) timed in EX3 (20 flag writes)."""
WAIT = 15.0


class _Observer:
    """Takes the comparisons and drops them (comparing is compare.py's, measured apart)."""

    def observe(self, operation: str, legacy: object, candidate: object, **timings: object) -> None:
        pass

    def observe_noise(self, operation: str, first: object, second: object) -> None:
        pass


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {WAIT:g} s")
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def _slice(
    name: str,
    phase: Phase,
    flags_target: str,
    profiles: ProfileClient,
    legacy: SqlAdapter[Profile],
    settings: RouteSettings,
) -> AsyncIterator[Router[Profile]]:
    flags = FlagsClient(flags_target)
    await flags.start()
    control = PhaseControl(flags, name)
    await control.current()
    for step in [Phase.SHADOW, Phase.DUAL_WRITE, Phase.CANARY, Phase.PRIMARY][: phase.rank]:
        await control.move(step, settings=settings, force=True)
    router = Router(
        name,
        flags=flags,
        legacy=legacy,
        outbox=legacy,
        candidate=ProfileCandidate(profiles),
        parse=Profile.FromString,
        observer=_Observer(),
        relay=False,
    )
    await _until(lambda: router.phase("get", "anyone") is phase, f"{name} in {phase}")
    try:
        yield router
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


def _reader(router: Router[Profile], errors: list[BaseException]) -> Callable[[], Awaitable[object]]:
    chooser = random.Random(7)

    async def read() -> object:
        try:
            return await router.get(f"user-{chooser.randrange(USERS):05d}")
        except Exception as error:
            errors.append(error)
            return None

    return read


async def _p99_ratio(
    settings: Settings, subject: Router[Profile], baseline: Router[Profile]
) -> tuple[float, float, float, int]:
    """Median per-round p99 ratio, the two p99s (medians) and the reads that raised to the caller."""
    errors: list[BaseException] = []
    count = settings.samples * 4
    subject_runs, baseline_runs = await load.interleaved(
        settings.rounds,
        load.sampler(_reader(subject, errors), count),
        load.sampler(_reader(baseline, errors), count),
    )
    subject_p99 = [percentile(run, 0.99) for run in subject_runs]
    baseline_p99 = [percentile(run, 0.99) for run in baseline_runs]
    return (
        load.paired_ratio(subject_p99, baseline_p99),
        median(subject_p99),
        median(baseline_p99),
        len(errors),
    )


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
            TcpProxy(int(profile_server.ready["port"])) as proxy,
        ):
            profiles = ProfileClient(proxy.address, options=ClientOptions(timeout=2.0))
            for number in range(0, USERS, 2):  # the microstate holds half the users
                user = f"user-{number:05d}"
                await profiles.create(Profile(user_id=user, display_name=f"User {number}", locale="en-GB"))
            rows += await _shadow_rows(settings, flags_server.target, profiles, legacy, proxy, profile_server)
            await profiles.close()
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
    proxy: TcpProxy,
    profile_server: object,
) -> list[Row]:
    rows = []
    sampled, everything = RouteSettings(shadow_sample=0.01), RouteSettings(shadow_sample=1.0)
    target = at_most(1.02)
    async with (
        _slice("ex-legacy", Phase.LEGACY, flags_target, profiles, legacy, sampled) as baseline,
        _slice("ex-shadow-1", Phase.SHADOW, flags_target, profiles, legacy, sampled) as one_percent,
        _slice("ex-shadow-100", Phase.SHADOW, flags_target, profiles, legacy, everything) as all_reads,
    ):
        for label, subject, goal in (("1%", one_percent, target), ("100%", all_reads, None)):
            ratio, p99, base, errors = await _p99_ratio(settings, subject, baseline)
            rows.append(
                Row(
                    "EX1",
                    f"Router.get p99 in shadow ({label} of reads mirrored) vs the legacy phase, "
                    "SQLite monolith, 1 in flight",
                    p99,
                    base,
                    "s",
                    ratio,
                    goal,
                    f"caller errors {errors}; shadow reads {subject.stats.shadow_reads}",
                )
            )
        proxy.delay = 0.05
        try:
            ratio, p99, base, slow_errors = await _p99_ratio(settings, one_percent, baseline)
        finally:
            proxy.delay = 0.0
        rows.append(
            Row(
                "EX2",
                "the same, 1% mirrored, the microstate slow (50 ms per chunk)",
                p99,
                base,
                "s",
                ratio,
                target,
                f"caller errors {slow_errors}; overruns {one_percent.stats.candidate_overruns}",
            )
        )
        profile_server.stop()  # type: ignore[attr-defined]
        ratio, p99, base, errors = await _p99_ratio(settings, all_reads, baseline)
        rows.append(
            Row(
                "EX2",
                "the same, 100% mirrored, the microstate down (killed)",
                p99,
                base,
                "s",
                ratio,
                None,
                f"candidate errors {all_reads.stats.candidate_errors}",
            )
        )
        rows.append(
            Row(
                "EX2",
                "reads that raised to the caller, microstate slow or down",
                float(slow_errors + errors),
                None,
                "errors",
                None,
                at_most(0, on="value"),
            )
        )
    return rows


async def _rollback_rows(flags_target: str, profile_target: str, legacy: SqlAdapter[Profile]) -> list[Row]:
    profiles = ProfileClient(profile_target, options=ClientOptions(timeout=2.0))
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
