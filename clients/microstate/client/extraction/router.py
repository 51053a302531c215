"""`Router`: one slice's calls sent to legacy, the microstate or both, by the phase its route flag holds.

    router = Router("profile", flags=flags, legacy=adapter, outbox=adapter,
                    candidate=ProfileCandidate(client), parse=Profile.FromString, observer=comparison)
    await router.start()
    profile = await router.get("u-1")
    await router.put("u-1", profile, request_id=request_id)

The phase is evaluated per call from the flags SDK's local rule set (no RPC), with the record's key as the
targeting key, so a canary split is sticky per subject. What each phase does (phases.py names them):

- legacy: legacy only.
- shadow: legacy answers. A sampled share of reads also reads the microstate, started concurrently with the
  legacy read (not after it, as Scientist does), and the caller gets legacy's answer as soon as it is there:
  the candidate is awaited off the request path, within a budget (max(budget_ms, 2 x legacy's latency)), then
  cancelled. Its answer, latency or error goes to the `observer`; no candidate error ever reaches the caller.
  At most `max_shadow_in_flight` candidate reads run at once: beyond that a read is simply not sampled, so a
  slow microstate cannot pile up work on the caller's loop. Given `shadow_candidate` (a function opening a
  candidate of its own), the sampled reads leave the caller's loop altogether: legacy answers, and its
  answer goes to a `ShadowWorker` (shadow.py: its own thread, loop and gRPC channel, a bounded queue that
  drops and counts when full), which reads the microstate and calls the observer there; `shadow_worker`
  takes another such sink (a `ShadowProcess`). A `noise_sample` share gets a second legacy read for the
  observer's `observe_noise` (Diffy's noise estimate).
- dual_write: as shadow for reads; legacy stays authoritative, and each legacy write appends its FORWARD
  outbox entry in the same transaction, which the `OutboxRelay` delivers to the microstate.
- canary: writes as dual_write; subjects the flag's gate admits read the microstate, within budget_ms, and
  fall back to legacy on any error or overrun (and while this process has a write of that key not yet
  relayed, so a canary user reads their own writes). On the `shadow_sample` share, legacy is read too,
  concurrently and off the request path, and the pair goes to the observer (the fallback, if needed, is
  then that read already under way); a Router with a shadow sink and no observer hands legacy's answer to
  the sink, as in shadow. Others read as in dual_write.
- primary: the microstate answers and is written first; each acknowledged microstate write then appends a
  REVERSE outbox entry (the write is acknowledged to the caller only once both are done; a retry with the
  same request id is safe), which keeps legacy current so a rollback loses nothing.
- retired: the microstate only.

Every pair the observer gets comes with the phase the Router routed that read by (a canary split is per
subject: a subject the gate does not admit reads in dual_write), so a `Comparator` counts per phase without
being told. Observing runs in a background task after the caller has its answer; an observer that raises is
counted (`stats.observer_errors`) and logged, never passed on.

Rollback from any phase is one write of the route flag (PhaseControl.move). Nothing acknowledged is lost
across it: entries already in the outbox are still delivered whatever the phase, and a legacy write after a
rollback supersedes the key's older pending REVERSE entries atomically (legacy.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from google.protobuf.message import Message

from microstate.client.extraction.candidates import Candidate
from microstate.client.extraction.legacy import Direction, LegacyAdapter, M, OutboxEntry, OutboxStore, Outcome
from microstate.client.extraction.phases import Phase, RouteSettings, flag_key
from microstate.client.extraction.relay import OutboxRelay, RelayOptions
from microstate.client.extraction.shadow import (
    CandidateBudgetExceeded,
    ShadowSink,
    ShadowWorker,
    judge_candidate,
    tell,
)
from microstate.client.flags import FlagsClient, RuleSetEvent

log = logging.getLogger("microstate.extraction")

MAX_SHADOW_IN_FLIGHT = 64
DEFAULT_SETTINGS = RouteSettings()
_PHASES = {phase.value: phase for phase in Phase}
"""By variant: a dict look-up, where Phase(variant) costs a few tenths of a µs a read."""
_LEGACY, _CANARY = Phase.LEGACY, Phase.CANARY
"""The read path compares with these: on Python 3.11 each `Phase.X` look-up costs ~0.15 µs."""
_MICROSTATE_FIRST = frozenset({Phase.PRIMARY, Phase.RETIRED})
_LEGACY_WITH_OUTBOX = frozenset({Phase.DUAL_WRITE, Phase.CANARY})


@dataclass(frozen=True)
class _Route:
    """What an operation routes by: its flag's key, settings and, for a flag without rules, its phase."""

    key: str
    settings: RouteSettings
    phase: Phase | None
    """The phase of every subject (a flag without rules), else None: evaluated per subject."""


class ComparisonObserver(Protocol):
    """Receives what the Router's off-path reads found (implemented by compare.py). Called on the Router's
    loop, after the caller has its answer; it must not block. An exception it raises is logged, never
    passed on."""

    def observe(
        self,
        operation: str,
        legacy: Message | None,
        candidate: Message | None,
        *,
        legacy_seconds: float,
        candidate_seconds: float | None,
        candidate_error: BaseException | None,
        phase: str,
    ) -> None:
        """One read of both sides: legacy's answer and the candidate's (None: no record, or it failed, then
        `candidate_error` says why and `candidate_seconds` is None if it ran out of budget). `phase` is
        the phase the Router routed this read by (shadow, dual_write or canary)."""
        ...

    def observe_noise(self, operation: str, first: Message | None, second: Message | None) -> None:
        """Two legacy reads of the same key (legacy against itself): what differs is noise."""
        ...


@dataclass
class RouterStats:
    """Counters of one Router (this process only)."""

    shadow_reads: int = 0
    shadow_skipped: int = 0
    """Sampled reads not shadowed because `max_shadow_in_flight` candidate reads were already running."""
    candidate_errors: int = 0
    candidate_overruns: int = 0
    canary_reads: int = 0
    canary_fallbacks: int = 0
    canary_compared: int = 0
    """Canary reads whose legacy answer was also read, off the request path, for the observer."""
    legacy_compare_failures: int = 0
    """Off-path legacy reads of a compared canary read that failed or overran (nothing to compare)."""
    noise_reads: int = 0
    observer_errors: int = 0


class _OffPathRead(Generic[M]):
    """A read started beside the caller's, only to be compared: timed from `started` to when it finished
    (not to when someone looked), and its failure always retrieved, so a read nobody awaits (the Router
    closed first) is never logged as an unretrieved task exception."""

    def __init__(self, read: Coroutine[Any, Any, M | None], started: float) -> None:
        self.started = started
        self.finished: float | None = None
        self.task: asyncio.Task[M | None] = asyncio.ensure_future(self._timed(read))
        self.task.add_done_callback(_retrieve)

    async def _timed(self, read: Coroutine[Any, Any, M | None]) -> M | None:
        try:
            answer = await read
        except asyncio.CancelledError:  # out of budget: it has no latency to report
            raise
        except Exception:
            self.finished = time.monotonic()
            raise
        self.finished = time.monotonic()
        return answer

    def seconds(self) -> float | None:
        """Its latency, None while it runs (or if it was cancelled before it started)."""
        return None if self.finished is None else self.finished - self.started

    async def within(self, deadline: float) -> M | None:
        """Its answer; TimeoutError (and the read cancelled) if it has none by `deadline` (monotonic)."""
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await self.task


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Router(Generic[M]):
    """Routes one slice's get/put/delete by its route flag (see the module docstring)."""

    def __init__(
        self,
        slice_name: str,
        *,
        flags: FlagsClient,
        legacy: LegacyAdapter[M],
        outbox: OutboxStore,
        candidate: Candidate[M],
        parse: Callable[[bytes], M],
        observer: ComparisonObserver | None = None,
        relay: bool | RelayOptions = True,
        max_shadow_in_flight: int = MAX_SHADOW_IN_FLIGHT,
        sample: Callable[[], float] = random.random,
        shadow_candidate: Callable[[], AbstractAsyncContextManager[Candidate[M]]] | None = None,
        shadow_worker: ShadowSink | None = None,
    ) -> None:
        self.slice_name = slice_name
        self._flags = flags
        self._legacy = legacy
        self._outbox = outbox
        self._candidate = candidate
        self._observer = observer
        self._max_in_flight = max_shadow_in_flight
        self._sample = sample
        self._background: set[asyncio.Task[None]] = set()
        self._off_path: set[asyncio.Task[Any]] = set()
        self._routes: dict[str, _Route] = {}
        self._stop_listening = flags.add_listener(self._forget_routes)
        self._flag_keys = {op: flag_key(slice_name, op) for op in ("get", "put", "delete")}
        self._slice_key = flag_key(slice_name)
        self.shadow: ShadowSink | None = shadow_worker
        if shadow_worker is None and shadow_candidate is not None and observer is not None:
            self.shadow = ShadowWorker(shadow_candidate, observer, parse, name=f"shadow-{slice_name}")
        self._unrelayed: collections.Counter[str] = collections.Counter()
        self.stats = RouterStats()
        self.relay: OutboxRelay[M] | None = None
        if relay:
            options = relay if isinstance(relay, RelayOptions) else None
            self.relay = OutboxRelay(
                outbox,
                candidate,
                parse,
                options,
                on_settled=self._relayed,
            )

    async def start(self) -> None:
        """Start the outbox relay (if this Router runs one) and the shadow worker (if it has one)."""
        if self.relay is not None:
            self.relay.start()
        if self.shadow is not None:
            self.shadow.start()

    async def close(self) -> None:
        """Stop the relay and cancel the off-path reads still running."""
        self._stop_listening()
        if self.relay is not None:
            await self.relay.close()
        if self.shadow is not None:
            await self.shadow.close()
        running = [*self._background, *self._off_path]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # -- phase ---------------------------------------------------------------------------------------------

    def _route(self, operation: str) -> _Route:
        """The route `operation` goes by: its own flag, else the slice's. Read once per change of the rule
        set (`_forget_routes` drops them), so a read costs one dict look-up, plus an evaluation only where
        the flag has rules (a canary split)."""
        known = self._routes.get(operation)
        if known is None:
            key = self._flag_keys.get(operation) or flag_key(self.slice_name, operation)
            flag = self._flags.local_flag(key)
            if flag is None:
                key = self._slice_key
                flag = self._flags.local_flag(key)
            settings = DEFAULT_SETTINGS if flag is None else RouteSettings.of(flag.metadata)
            same_for_all = flag is None or not flag.rules
            phase = self._phase_by(key, "") if same_for_all else None
            known = self._routes[operation] = _Route(key, settings, phase)
        return known

    def _forget_routes(self, event: RuleSetEvent) -> None:
        """Any rule-set event (a flag changed, a snapshot, a saved rule set loaded): read routes afresh.
        The async flags client's feed runs on the Router's loop, so this never interleaves with a read."""
        self._routes.clear()

    def _phase_by(self, route: str, key: str) -> Phase:
        variant = self._flags.evaluate_string(route, "legacy", targeting_key=key)
        return _PHASES.get(variant, _LEGACY)

    def _phase_of(self, route: _Route, key: str) -> Phase:
        return route.phase or self._phase_by(route.key, key)

    def phase(self, operation: str, key: str) -> Phase:
        """The phase `operation` on `key` runs in (from the local rule set; legacy before there is one)."""
        return self._phase_of(self._route(operation), key)

    # -- reads ---------------------------------------------------------------------------------------------

    async def get(self, key: str) -> M | None:
        """The record under `key` from the side the phase says (None: no record)."""
        route = self._route("get")
        phase, settings = self._phase_of(route, key), route.settings
        if phase is _LEGACY:
            return await self._legacy.get(key)
        if phase in _MICROSTATE_FIRST:
            return await self._candidate.get(key)
        if phase is _CANARY and not self._unrelayed[key]:
            return await self._canary_read(key, settings)
        if self._sampled(settings):
            if self.shadow is not None:
                return await self._handed_over_read(key, phase, settings)
            if self._room_in_flight():
                return await self._shadowed_read(key, phase, settings)
        value = await self._legacy.get(key)  # the common case, kept short: legacy alone
        noise = settings.noise_sample
        if noise > 0 and self._observer is not None and self._sample() < noise:
            self._spawn(self._noise(key, value))
        return value

    def _sampled(self, settings: RouteSettings) -> bool:
        """Whether this read is one of the sampled ones that read both sides for the observer."""
        share = settings.shadow_sample
        observed = self._observer is not None or self.shadow is not None
        return share > 0 and observed and self._sample() < share

    def _room_in_flight(self) -> bool:
        if len(self._background) >= self._max_in_flight:
            self.stats.shadow_skipped += 1
            return False
        return True

    async def _handed_over_read(self, key: str, phase: Phase, settings: RouteSettings) -> M | None:
        """Legacy answers; its answer goes to the shadow worker, which reads the microstate and compares on
        its own thread (never blocking: a full queue drops the comparison, counted)."""
        started = time.monotonic()
        value = await self._legacy.get(key)
        legacy_seconds = time.monotonic() - started
        self._hand_over(phase, key, value, legacy_seconds, max(settings.budget_ms / 1000, 2 * legacy_seconds))
        return value

    def _hand_over(
        self, phase: Phase, key: str, legacy: M | None, legacy_seconds: float, budget: float
    ) -> None:
        assert self.shadow is not None
        answer = None if legacy is None else legacy.SerializeToString()
        self.shadow.submit(phase.value, "get", key, answer, legacy_seconds, budget)

    async def _canary_read(self, key: str, settings: RouteSettings) -> M | None:
        """The microstate answers; on a sampled share legacy is read too, concurrently and off the request
        path, for the observer (and, should the microstate fail, it is the fallback already under way)."""
        self.stats.canary_reads += 1
        started = time.monotonic()
        compare = self._sampled(settings) and self._room_in_flight()
        legacy = self._start_off_path(self._legacy.get(key), started) if compare else None
        try:
            async with asyncio.timeout(settings.budget_ms / 1000):
                value = await self._candidate.get(key)
        except Exception as error:  # any candidate failure: legacy answers
            self.stats.canary_fallbacks += 1
            log.debug("canary read of %r fell back to legacy: %r", key, error)
            if legacy is None:
                return await self._legacy.get(key)
            if isinstance(error, TimeoutError):
                error = CandidateBudgetExceeded(f"no answer for {key!r} within {settings.budget_ms:g} ms")
            fallback = await legacy.task
            seconds = None if isinstance(error, CandidateBudgetExceeded) else time.monotonic() - started
            self._spawn(self._report(Phase.CANARY, fallback, legacy.seconds(), None, seconds, error))
            return fallback
        if legacy is not None:
            candidate_seconds = time.monotonic() - started
            budget = max(settings.budget_ms / 1000, 2 * candidate_seconds)
            self._spawn(self._judge_legacy(key, legacy, value, candidate_seconds, budget))
        return value

    async def _shadowed_read(self, key: str, phase: Phase, settings: RouteSettings) -> M | None:
        """Legacy answers; the microstate is read concurrently and judged off the request path."""
        started = time.monotonic()
        candidate = self._start_off_path(self._candidate.get(key), started)
        try:
            value = await self._legacy.get(key)
        except BaseException:
            candidate.task.cancel()
            raise
        legacy_seconds = time.monotonic() - started
        budget = max(settings.budget_ms / 1000, 2 * legacy_seconds)
        self._spawn(self._judge(key, phase, value, legacy_seconds, candidate, budget))
        return value

    def _start_off_path(self, read: Coroutine[Any, Any, M | None], started: float) -> _OffPathRead[M]:
        off_path = _OffPathRead(read, started)
        self._off_path.add(off_path.task)
        off_path.task.add_done_callback(self._off_path.discard)
        return off_path

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _judge(
        self,
        key: str,
        phase: Phase,
        legacy: M | None,
        legacy_seconds: float,
        candidate: _OffPathRead[M],
        budget: float,
    ) -> None:
        """Wait (off the request path) for a shadow read's candidate, then hand the pair to the observer."""
        self.stats.shadow_reads += 1
        read = candidate.within(candidate.started + budget)
        answer, error = await judge_candidate(read, key, budget, self.stats)
        await self._report(phase, legacy, legacy_seconds, answer, candidate.seconds(), error)

    async def _judge_legacy(
        self, key: str, legacy: _OffPathRead[M], candidate: M | None, candidate_seconds: float, budget: float
    ) -> None:
        """Wait (off the request path) for a compared canary read's legacy answer, then report the pair. A
        Router whose only comparer is its shadow sink hands legacy's answer over, as in shadow (the sink reads
        the microstate again)."""
        self.stats.canary_compared += 1
        try:
            answer = await legacy.within(legacy.started + budget)
        except Exception as failure:  # nothing to compare the candidate with; the caller has its answer
            self.stats.legacy_compare_failures += 1
            log.debug("legacy read of %r for a canary comparison failed: %r", key, failure)
            return
        if self._observer is None:
            self._hand_over(Phase.CANARY, key, answer, legacy.seconds() or 0.0, budget)
            return
        await self._report(Phase.CANARY, answer, legacy.seconds(), candidate, candidate_seconds, None)

    async def _report(
        self,
        phase: Phase,
        legacy: M | None,
        legacy_seconds: float | None,
        candidate: M | None,
        candidate_seconds: float | None,
        error: BaseException | None,
    ) -> None:
        self._tell(
            lambda observer: observer.observe(
                "get",
                legacy,
                candidate,
                legacy_seconds=legacy_seconds or 0.0,
                candidate_seconds=candidate_seconds,
                candidate_error=error,
                phase=phase.value,
            )
        )

    async def _noise(self, key: str, first: M | None) -> None:
        self.stats.noise_reads += 1
        with contextlib.suppress(Exception):
            second = await self._legacy.get(key)
            self._tell(lambda observer: observer.observe_noise("get", first, second))

    def _tell(self, call: Callable[[ComparisonObserver], None]) -> None:
        if self._observer is not None:
            tell(self._observer, self.stats, call)

    # -- writes --------------------------------------------------------------------------------------------

    async def put(self, key: str, value: M, *, request_id: str | None = None) -> M:
        """Write `value` under `key` where the phase says; returns the record as the authoritative side
        stored it. Acknowledged (returned) only once the write and its outbox entry are durable. Retrying
        with the same `request_id` applies once."""
        request_id = request_id or str(uuid.uuid4())
        phase = self.phase("put", key)
        if phase in _MICROSTATE_FIRST:
            await self._forward_first(key)
            stored = await self._candidate.put(key, value, request_id=request_id)
            if phase is Phase.PRIMARY:
                await self._outbox.append(
                    Direction.REVERSE, key, request_id, stored.SerializeToString(deterministic=True)
                )
                self._wake_relay()
            return stored
        if phase in _LEGACY_WITH_OUTBOX:
            self._track(key)
            try:
                stored = await self._legacy.put(key, value, request_id=request_id, outbox=Direction.FORWARD)
            except BaseException:
                self._relayed_key(key)
                raise
            self._wake_relay()
            return stored
        return await self._legacy.put(key, value, request_id=request_id)

    async def delete(self, key: str, *, request_id: str | None = None) -> bool:
        """Delete the record under `key` where the phase says, as `put`."""
        request_id = request_id or str(uuid.uuid4())
        phase = self.phase("delete", key)
        if phase in _MICROSTATE_FIRST:
            await self._forward_first(key)
            deleted = await self._candidate.delete(key, request_id=request_id)
            if phase is Phase.PRIMARY:
                await self._outbox.append(Direction.REVERSE, key, request_id, None)
                self._wake_relay()
            return deleted
        if phase in _LEGACY_WITH_OUTBOX:
            self._track(key)
            try:
                deleted = await self._legacy.delete(key, request_id=request_id, outbox=Direction.FORWARD)
            except BaseException:
                self._relayed_key(key)
                raise
            self._wake_relay()
            return deleted
        return await self._legacy.delete(key, request_id=request_id)

    async def _forward_first(self, key: str) -> None:
        """Deliver the key's pending FORWARD entries (legacy writes of dual_write, just before the move to
        primary) before the microstate is written directly, so an older legacy write can never land on top
        of a newer one. Delivery is idempotent by request id: if the relay delivers the same entry too,
        whichever arrives second is a no-op."""
        if self.relay is not None:
            for entry in await self._outbox.pending_for(Direction.FORWARD, key):
                await self.relay.deliver_now(entry)

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    def _track(self, key: str) -> None:
        """Note a FORWARD write of `key` this process's relay has yet to deliver (for canary reads)."""
        if self.relay is not None:
            self._unrelayed[key] += 1

    def _relayed(self, entry: OutboxEntry, outcome: Outcome) -> None:
        if entry.direction is Direction.FORWARD:
            self._relayed_key(entry.key)

    def _relayed_key(self, key: str) -> None:
        if self.relay is None:
            return
        if self._unrelayed[key] <= 1:
            self._unrelayed.pop(key, None)
        else:
            self._unrelayed[key] -= 1
