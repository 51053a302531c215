"""`ShadowWorker`: a Router's shadow comparisons on their own thread, off the caller's event loop.

A compared shadow read costs CPU (the candidate's gRPC call, waiting for it, the Comparator's diff), a few
hundred microseconds of it; run on the caller's loop, that lands on the caller's next reads. The worker
runs it on its own thread with its own event loop and its own candidate (its own gRPC channel, opened there
by `open_candidate`: an aio channel belongs to the loop it was made on). The caller hands over (phase,
operation, key, legacy's answer as bytes) and never waits: the hand-over queue is bounded, and a full queue
drops the read, counted. Bytes, not the message: the caller owns the message it got and may change it.

The observer is called on the worker's thread, so it must be thread-safe (a `Comparator` is: one lock), and
its stats stay readable from the caller's side. Candidate errors and overruns are counted and observed, never
raised. `close()` stops the thread: reads still queued or running are cancelled, not observed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol

from microstate.client.extraction.candidates import Candidate
from microstate.client.extraction.legacy import M

if TYPE_CHECKING:
    from microstate.client.extraction.router import ComparisonObserver

log = logging.getLogger("microstate.extraction")

QUEUE_CAPACITY = 256
IN_FLIGHT = 16
"""Candidate reads the worker runs at once; the rest wait in the queue."""


class CandidateBudgetExceeded(TimeoutError):
    """The microstate did not answer within the read's budget."""


class CandidateCounters(Protocol):
    """The counters a compared read's outcome goes to (a Router's stats, a worker's)."""

    candidate_errors: int
    candidate_overruns: int
    observer_errors: int


async def judge_candidate(
    read: Awaitable[M | None], key: str, budget: float, counters: CandidateCounters
) -> tuple[M | None, BaseException | None]:
    """The answer of a compared candidate read that gives up at its `budget` (seconds), or the error to tell
    the observer (an overrun as CandidateBudgetExceeded), counted; never raised: it is not the caller's."""
    try:
        return await read, None
    except TimeoutError:
        counters.candidate_overruns += 1
        return None, CandidateBudgetExceeded(f"no answer for {key!r} within {budget:.3f}s")
    except Exception as failure:
        counters.candidate_errors += 1
        return None, failure


def tell(
    observer: ComparisonObserver, counters: CandidateCounters, call: Callable[[ComparisonObserver], None]
) -> None:
    """`call` the observer; its failure is counted and logged, never passed on."""
    try:
        call(observer)
    except Exception:
        counters.observer_errors += 1
        log.exception("the comparison observer failed")


@dataclass
class ShadowStats:
    """Counters of one worker. `submitted` and `dropped` are written by the caller's thread, the rest by
    the worker's (one writer each)."""

    submitted: int = 0
    dropped: int = 0
    """Reads not compared because the queue was full (or the worker closed)."""
    observed: int = 0
    """Pairs handed to the observer (answers, errors and overruns)."""
    candidate_errors: int = 0
    candidate_overruns: int = 0
    observer_errors: int = 0


class ShadowSink(Protocol):
    """Where a Router hands its sampled shadow reads: a `ShadowWorker` (a thread) or a `ShadowProcess`."""

    @property
    def stats(self) -> ShadowStats: ...

    def start(self) -> None: ...

    def submit(
        self, phase: str, operation: str, key: str, legacy: bytes | None, legacy_seconds: float, budget: float
    ) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One read to compare: legacy's answer (serialized) and what the candidate read needs."""

    phase: str
    operation: str
    key: str
    legacy: bytes | None
    legacy_seconds: float
    budget: float


class ShadowWorker(Generic[M]):
    """Compares shadow reads on a thread of its own (see the module docstring)."""

    def __init__(
        self,
        open_candidate: Callable[[], AbstractAsyncContextManager[Candidate[M]]],
        observer: ComparisonObserver,
        parse: Callable[[bytes], M],
        *,
        capacity: int = QUEUE_CAPACITY,
        in_flight: int = IN_FLIGHT,
        name: str = "shadow",
    ) -> None:
        self._open = open_candidate
        self._observer = observer
        self._parse = parse
        self._capacity = capacity
        self._in_flight = in_flight
        self._name = name
        self._queue: collections.deque[ShadowJob] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._here = False
        self._thread: threading.Thread | None = None
        self.stats = ShadowStats()

    def start(self) -> None:
        """Start the thread (once; `submit` starts it too). Reads queued before its candidate is open wait
        in the queue."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=f"microstate-{self._name}", daemon=True)
            self._thread.start()

    def submit(
        self, phase: str, operation: str, key: str, legacy: bytes | None, legacy_seconds: float, budget: float
    ) -> bool:
        """Queue one read to compare; never blocks: False (and counted as dropped) when the queue is full."""
        if not self._here:
            self.start()
        if self._stopping or len(self._queue) >= self._capacity:
            self.stats.dropped += 1
            return False
        self._queue.append(ShadowJob(phase, operation, key, legacy, legacy_seconds, budget))
        self.stats.submitted += 1
        self._wake_worker()
        return True

    def serve_here(self) -> asyncio.Task[None]:
        """Run the worker on the current loop instead of a thread of its own (a ShadowProcess's child),
        until `stop()`: `submit` must then be called on this loop too. Marked at once, not when the task
        first runs, so a `submit` before that queues rather than starting a thread beside it."""
        self._here = True
        return asyncio.create_task(self._serve())

    def stop(self) -> None:
        """Ask the worker to stop (what `close` does, without waiting)."""
        self._stopping = True
        self._wake_worker()

    async def close(self) -> None:
        """Stop the thread; queued and running reads are cancelled (the caller's loop is not blocked)."""
        thread, self._stopping = self._thread, True
        if thread is None:
            return
        self._wake_worker()
        await asyncio.to_thread(thread.join)

    def _wake_worker(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the worker's loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    # -- the worker's thread -------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:
            log.exception("the shadow worker stopped on an error")
        finally:
            self._stopping = True

    async def _serve(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        running: set[asyncio.Task[None]] = set()
        try:
            async with self._open() as candidate:
                while not self._stopping:
                    while self._queue and len(running) < self._in_flight:
                        task = asyncio.create_task(self.compare(candidate, self._queue.popleft()))
                        running.add(task)
                        task.add_done_callback(running.discard)
                        task.add_done_callback(lambda _: self._wake.set() if self._wake else None)
                    await self._wake.wait()
                    self._wake.clear()
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
        finally:
            self._queue.clear()

    async def compare(self, candidate: Candidate[M], job: ShadowJob) -> None:
        """Read `job`'s key from the candidate within its budget and hand the pair to the observer, counting
        errors and overruns (the worker's loop runs this; so does a ShadowProcess's child)."""
        started = time.monotonic()
        read = asyncio.wait_for(candidate.get(job.key), job.budget)
        answer, error = await judge_candidate(read, job.key, job.budget, self.stats)
        seconds = None if isinstance(error, CandidateBudgetExceeded) else time.monotonic() - started
        legacy = None if job.legacy is None else self._parse(job.legacy)
        tell(
            self._observer,
            self.stats,
            lambda observer: observer.observe(
                job.operation,
                legacy,
                answer,
                legacy_seconds=job.legacy_seconds,
                candidate_seconds=seconds,
                candidate_error=error,
                phase=job.phase,
            ),
        )
        self.stats.observed += 1
