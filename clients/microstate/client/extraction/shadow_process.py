"""`ShadowProcess`: a Router's shadow comparisons in a helper process (the A/B alternative to the thread).

The same hand-over as `ShadowWorker` (shadow.py), but the candidate read and the Comparator run in a
process of their own, so none of their CPU takes the caller's GIL, and, given `cpus`, none of the caller's
core. Jobs go over a Unix datagram socket, sent non-blocking (a datagram is whole or not sent: a send that
would block is a drop, counted); the child takes each off at once and hands it to a `ShadowWorker` of its
own, whose bounded queue drops the excess, counted too. The child writes a snapshot of its counters and its
observer's stats to a file every `report_interval` (replaced whole, so always the latest); `stats` and
`comparison()` read it without waiting for the child.

`open_candidate`, `make_observer` and `message` are pickled to the child (spawned: never forked from a
process with gRPC threads), so they must be module-level callables or classes (functools.partial is fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, Generic

from google.protobuf.message import Message

from microstate.client.extraction.candidates import Candidate
from microstate.client.extraction.compare import ComparisonStats
from microstate.client.extraction.legacy import M
from microstate.client.extraction.shadow import IN_FLIGHT, ShadowStats, ShadowWorker

log = logging.getLogger("microstate.extraction")

REPORT_INTERVAL = 0.1
_STOP = b""


class ShadowProcess(Generic[M]):
    """Compares shadow reads in a helper process (see the module docstring)."""

    def __init__(
        self,
        open_candidate: Callable[[], AbstractAsyncContextManager[Candidate[M]]],
        make_observer: Callable[[], Any],
        message: type[Message],
        *,
        in_flight: int = IN_FLIGHT,
        report_interval: float = REPORT_INTERVAL,
        nice: int = 0,
        cpus: frozenset[int] | None = None,
    ) -> None:
        """`nice`: added to the child's niceness (19: run only when the caller's core has nothing else to
        do, at the risk of comparing nothing on a saturated machine); `cpus`: the cores it may run on
        (default: the caller's)."""
        self._jobs, self._child_jobs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._jobs.setblocking(False)
        handle, self._report_path = tempfile.mkstemp(prefix="microstate-shadow-")
        os.close(handle)
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(
            target=_child,
            args=(
                self._child_jobs,
                self._report_path,
                open_candidate,
                make_observer,
                message,
                in_flight,
                report_interval,
                nice,
                cpus,
            ),
            name="microstate-shadow",
            daemon=True,
        )
        self.cpus = cpus
        self._started = False
        self._closed = False
        self._submitted = ShadowStats()
        self._reported = ShadowStats()
        self._comparison = ComparisonStats((), (), ())
        self._ready = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._process.start()
            self._child_jobs.close()

    def submit(
        self, phase: str, operation: str, key: str, legacy: bytes | None, legacy_seconds: float, budget: float
    ) -> bool:
        """Send one read to compare; never blocks: False (dropped, counted) when the socket buffer is full."""
        self.start()
        job = pickle.dumps((phase, operation, key, legacy, legacy_seconds, budget), pickle.HIGHEST_PROTOCOL)
        try:
            if self._closed:
                raise BlockingIOError
            self._jobs.send(job)
        except OSError:  # BlockingIOError: full; others: the child is gone
            self._submitted.dropped += 1
            return False
        self._submitted.submitted += 1
        return True

    @property
    def stats(self) -> ShadowStats:
        """The counters as the child last reported them, with the sends this side dropped (a full socket)
        added to the child's drops (its worker's full queue)."""
        self._drain()
        dropped = self._submitted.dropped + self._reported.dropped
        return replace(
            self._reported, submitted=self._submitted.submitted - self._reported.dropped, dropped=dropped
        )

    def comparison(self) -> ComparisonStats:
        """The child's observer's stats, as last reported."""
        self._drain()
        return self._comparison

    def _drain(self) -> None:
        try:
            with open(self._report_path, "rb") as report:
                raw = report.read()
        except OSError:
            return
        if raw:
            self._reported, self._comparison = pickle.loads(raw)
            self._ready = True

    @property
    def ready(self) -> bool:
        """Whether the child has opened its candidate and takes jobs (it reported once)."""
        self._drain()
        return self._ready

    async def close(self) -> None:
        """Stop the child (queued and running reads are cancelled) and wait for it, off the caller's loop."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            with contextlib.suppress(OSError):
                self._jobs.send(_STOP)
            await asyncio.to_thread(self._process.join, 10)
            if self._process.is_alive():
                self._process.kill()
                await asyncio.to_thread(self._process.join)
            self._drain()
        self._jobs.close()
        with contextlib.suppress(OSError):
            os.unlink(self._report_path)


def _child(
    jobs: socket.socket,
    reports: str,
    open_candidate: Callable[[], AbstractAsyncContextManager[Candidate[Any]]],
    make_observer: Callable[[], Any],
    message: type[Message],
    in_flight: int,
    report_interval: float,
    nice: int,
    cpus: frozenset[int] | None,
) -> None:
    if nice:
        os.nice(nice)
    if cpus:
        os.sched_setaffinity(0, cpus)
    observer = make_observer()
    worker = ShadowWorker(open_candidate, observer, message.FromString, in_flight=in_flight)
    asyncio.run(_serve(jobs, reports, worker, observer, report_interval))


async def _serve(
    jobs: socket.socket, reports: str, worker: ShadowWorker[Any], observer: Any, report_interval: float
) -> None:
    """The child's one loop: takes each datagram off the socket at once (its queue holds few:
    net.unix.max_dgram_qlen) and hands it to the worker on the same loop, whose bounded queue drops the
    excess; yields after each, so a flood of jobs cannot starve the reads under way. Reports every
    `report_interval`."""

    def report() -> None:
        with contextlib.suppress(OSError):
            with open(f"{reports}.new", "wb") as file:
                file.write(pickle.dumps((worker.stats, observer.stats()), pickle.HIGHEST_PROTOCOL))
            os.replace(f"{reports}.new", reports)

    async def reporter() -> None:
        while True:
            report()
            await asyncio.sleep(report_interval)

    loop = asyncio.get_running_loop()
    jobs.setblocking(False)
    serving = worker.serve_here()
    reporting = asyncio.create_task(reporter())
    try:
        while (datagram := await loop.sock_recv(jobs, 1 << 20)) != _STOP:
            worker.submit(*pickle.loads(datagram))
            await asyncio.sleep(0)  # sock_recv returns without yielding while datagrams are waiting
    finally:
        worker.stop()
        await serving
        reporting.cancel()
        report()
