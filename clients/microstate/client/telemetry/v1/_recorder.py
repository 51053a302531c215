"""TelemetryClient: `record()` never blocks the caller; a worker thread sends the events in batches.

Why a plain thread with the blocking gRPC channel (not an asyncio task): `record()` is called from threads
and from coroutines on any loop, and must cost the same from both; a thread of its own does not depend on
the caller's loop being alive or responsive, and after `fork()` the child only has to forget the parent's
state and start a new thread on first use (`os.register_at_fork`).

Accounting. Every `record()` call is one occurrence, and at any time
`recorded == sent + sum(dropped.values()) + buffered` (`stats()` reads all of them under one lock). An
occurrence is *sent* once the server acknowledged it, *dropped* for one reason: `buffer_full` (the oldest
were evicted to make room), `rejected` (the server refused it), `retries_exhausted` (its batch failed
`max_attempts` times) or `shutdown` (still unsent when close() ran out of time), else *buffered* (in the
buffer, pre-aggregated, or in the batch in flight). A batch keeps its (producer_id, batch_seq) through its
retries, so the server counts it once; only a batch given up on after an attempt whose answer was lost may
have been counted by the server and dropped here.

Drops are not logged on the hot path: the worker logs one warning at the first drop, then a summary at
most once a minute.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Final

from microstate.client import _options
from microstate.client._breaker import BreakerState, CircuitBreaker
from microstate.client.errors import (
    Aborted,
    Cancelled,
    DeadlineExceeded,
    Internal,
    MicrostateError,
    ResourceExhausted,
    Unavailable,
    Unknown,
)
from microstate.client.telemetry.v1._client import SyncTelemetryClient
from microstate.telemetry.v1 import telemetry_pb2 as pb

log = logging.getLogger("microstate.client.telemetry")

DEFAULT_BUFFER_SIZE: Final = 8192
DEFAULT_BATCH_SIZE: Final = 512
DEFAULT_FLUSH_INTERVAL: Final = 1.0
DEFAULT_EXPORT_TIMEOUT: Final = 2.0
DEFAULT_MAX_ATTEMPTS: Final = 6
INITIAL_BACKOFF: Final = 0.1
MAX_BACKOFF: Final = 30.0
SUMMARY_INTERVAL: Final = 60.0
EXIT_BUDGET: Final = 1.0
"""Seconds every open TelemetryClient gets in total to flush at interpreter exit."""
MAX_PRE_AGGREGATED: Final = 4096
"""Distinct (name, attributes, second) counters held at once; past it `count()` records plainly."""

BUFFER_FULL: Final = "buffer_full"
REJECTED: Final = "rejected"
RETRIES_EXHAUSTED: Final = "retries_exhausted"
SHUTDOWN: Final = "shutdown"
REASONS: Final = (BUFFER_FULL, REJECTED, RETRIES_EXHAUSTED, SHUTDOWN)

_RETRYABLE = (Unavailable, DeadlineExceeded, Cancelled, ResourceExhausted, Aborted, Internal, Unknown)
"""Failures after which the batch is sent again (OTLP's list; INTERNAL and UNKNOWN too: the server or a
proxy failed, not the batch). Everything else refuses the batch itself."""

Item = tuple[str, float, "dict[str, str] | None", str, int, int]
"""(name, value, attributes, subject_id, time_unix_nano, occurrences)"""


@dataclass(frozen=True, slots=True)
class Stats:
    recorded: int
    sent: int
    dropped: dict[str, int]
    buffered: int

    @property
    def balanced(self) -> bool:
        return self.recorded == self.sent + sum(self.dropped.values()) + self.buffered


@dataclass(slots=True)
class _Batch:
    seq: int
    request: pb.RecordEventsRequest
    occurrences: int
    attempts: int = 0
    done: bool = False


@dataclass(slots=True)
class _State:
    """Everything a fork resets (the child starts afresh; the parent's events are the parent's)."""

    producer_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    wake: threading.Event = field(default_factory=threading.Event)
    buffer: collections.deque[Item] = field(default_factory=collections.deque)
    counters: dict[tuple[str, tuple[tuple[str, str], ...], int], list[float]] = field(default_factory=dict)
    recorded: int = 0
    sent: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    queued: int = 0
    """Occurrences in the buffer and the counters."""
    inflight: _Batch | None = None
    next_seq: int = 1
    worker: threading.Thread | None = None
    closing_deadline: float | None = None
    closed: bool = False
    flush_requested: int = 0

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


_open: weakref.WeakSet[TelemetryClient] = weakref.WeakSet()


class TelemetryClient:
    """Records events without ever blocking the caller: `record()` costs about a microsecond whether the
    server is up, refusing connections or never answering. Thread-safe; usable from asyncio (every method
    is synchronous and none waits on I/O, except flush() and close() up to their timeout).

    Batches go out every `flush_interval` seconds or once `batch_size` events wait, one RPC at a time, each
    bounded by `export_timeout`; failures back off exponentially with jitter (honouring the server's
    retry hint) and open a circuit breaker while the server is down. A full buffer drops its oldest events.
    With `pre_aggregate`, `count()` sums occurrences per (name, attributes, second) before sending.
    `enabled=False` makes every call a no-op (for tests and benchmarks)."""

    def __init__(
        self,
        target: str | None = None,
        *,
        options: _options.ClientOptions | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        export_timeout: float = DEFAULT_EXPORT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        pre_aggregate: bool = False,
        enabled: bool = True,
    ) -> None:
        if not 1 <= batch_size <= buffer_size:
            raise ValueError("need 1 <= batch_size <= buffer_size")
        if flush_interval <= 0 or export_timeout <= 0 or max_attempts < 1:
            raise ValueError("flush_interval and export_timeout must be > 0, max_attempts >= 1")
        self._target, self._options = target, options
        self._capacity = buffer_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._export_timeout = export_timeout
        self._max_attempts = max_attempts
        self._pre_aggregate = pre_aggregate
        self.enabled = enabled
        self._breaker_options = options.breaker if options else _options.BreakerOptions()
        self._breaker = self._new_breaker()
        self._client: SyncTelemetryClient | None = None
        self._state = _State()
        self._not_before = 0.0  # backoff: no attempt before this monotonic time
        self._backoff = INITIAL_BACKOFF
        self._logged_drops = 0
        self._next_summary = 0.0
        _open.add(self)

    # -- the hot path ---------------------------------------------------------------------------------

    def record(
        self,
        name: str,
        value: float = 1.0,
        *,
        attributes: dict[str, str] | None = None,
        subject_id: str = "",
        time_unix_nano: int = 0,
    ) -> None:
        """Buffer one event (its time: now, unless given) and return at once. Never raises for the
        server's state; a closed client drops the event (reason shutdown)."""
        if not self.enabled:
            return
        item = (name, value, attributes, subject_id, time_unix_nano or time.time_ns(), 1)
        state = self._state
        with state.lock:
            state.recorded += 1
            if state.closed:
                state.dropped[SHUTDOWN] += 1
                return
            buffer = state.buffer
            if state.queued >= self._capacity and buffer:
                state.queued -= (evicted := buffer.popleft())[5]
                state.dropped[BUFFER_FULL] += evicted[5]
            buffer.append(item)
            state.queued += 1
            full = len(buffer) == self._batch_size
        if state.worker is None:
            self._start_worker()
        if full:
            state.wake.set()

    def count(self, name: str, value: float = 1.0, *, attributes: dict[str, str] | None = None) -> None:
        """A counter increment: with `pre_aggregate`, summed with the other increments of the same name
        and attributes in the same second and sent as one event; otherwise `record(name, value)`."""
        if not self._pre_aggregate or not self.enabled:
            self.record(name, value, attributes=attributes)
            return
        key = (name, tuple(sorted(attributes.items())) if attributes else (), int(time.time()))
        state = self._state
        with state.lock:
            counter = state.counters.get(key)
            if counter is None and len(state.counters) < MAX_PRE_AGGREGATED and not state.closed:
                counter = state.counters[key] = [0.0, 0]
            if counter is not None:
                state.recorded += 1
                state.queued += 1
                counter[0] += value
                counter[1] += 1
        if counter is None:  # closed, or too many distinct counters: recorded plainly
            self.record(name, value, attributes=attributes)
        elif state.worker is None:
            self._start_worker()

    # -- reading and ending ---------------------------------------------------------------------------

    def stats(self) -> Stats:
        """recorded, sent, dropped by reason and buffered, read at one instant (they always balance)."""
        state = self._state
        with state.lock:
            inflight = state.inflight.occurrences if state.inflight else 0
            return Stats(state.recorded, state.sent, dict(state.dropped), state.queued + inflight)

    @property
    def producer_id(self) -> str:
        return self._state.producer_id

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what was recorded before this call; True once all of it is sent or dropped, False when
        `timeout` seconds passed first (it never waits longer)."""
        deadline = time.monotonic() + timeout
        state = self._state
        with state.lock:
            target = state.recorded
            start = state.worker is None and not state.closed and state.queued > 0
            state.flush_requested += 1
        if start:
            self._start_worker()
        state.wake.set()
        with state.changed:
            return state.changed.wait_for(
                lambda: state.sent + sum(state.dropped.values()) >= target,
                max(0.0, deadline - time.monotonic()),
            )

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is buffered within `timeout` seconds, drop the rest (reason shutdown), release the
        channel. Never takes longer than `timeout`; True when nothing had to be dropped. Later records are
        dropped (reason shutdown). Safe to call twice."""
        deadline = time.monotonic() + timeout
        state = self._state
        with state.lock:
            if state.closed:
                return True
            state.closing_deadline = deadline
            worker = state.worker
        state.wake.set()
        if worker is not None:
            with state.changed:
                state.changed.wait_for(lambda: state.closed, max(0.0, deadline - time.monotonic()))
        clean = self._finish_closing()
        client, self._client = self._client, None
        if client is not None:
            # Closing the channel cancels an RPC still in flight (the worker then ends), but may wait on
            # a connection attempt to a server that never answers: off the caller's clock.
            threading.Thread(target=client.close, name="microstate-telemetry-close", daemon=True).start()
        _open.discard(self)
        return clean

    def _finish_closing(self) -> bool:
        """Drop what is left (shutdown) and mark the client closed; True if nothing was left."""
        state = self._state
        with state.lock:
            left = state.queued + (state.inflight.occurrences if state.inflight else 0)
            if state.inflight is not None:
                state.inflight.done = True
                state.inflight = None
            state.buffer.clear()
            state.counters.clear()
            state.queued = 0
            state.dropped[SHUTDOWN] += left
            state.closed = True
            state.changed.notify_all()
        return left == 0

    # -- the worker -----------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        state = self._state
        with state.lock:
            if state.worker is not None or state.closed:
                return
            state.worker = threading.Thread(
                target=self._run, args=(state,), name="microstate-telemetry", daemon=True
            )
        state.worker.start()

    def _channel(self) -> SyncTelemetryClient:
        if self._client is None:
            self._client = SyncTelemetryClient(self._target, options=self._options)
        return self._client

    def _run(self, state: _State) -> None:
        try:
            while state is self._state and not state.closed:
                deadline = state.closing_deadline
                if deadline is None:
                    state.wake.wait(self._wait_seconds())
                    state.wake.clear()
                self._log_drops(state)
                if deadline is not None and not self._may_send_before(state, deadline):
                    self._finish_closing()  # what is left cannot go out in time: close() returns now
                    return
                if time.monotonic() < self._not_before or not self._breaker.allow():
                    continue
                batch = self._next_batch(state, flush_all=deadline is not None)
                if batch is not None:
                    self._send(state, batch)
                elif deadline is not None:
                    self._finish_closing()
                    return
        except Exception:  # the worker must never take the application down, nor die silently
            log.exception("telemetry worker failed; events are kept until close()")

    def _wait_seconds(self) -> float:
        """Until the next flush is due, or the backoff ends if sooner."""
        if self._not_before:
            return max(0.001, min(self._flush_interval, self._not_before - time.monotonic()))
        return self._flush_interval

    def _may_send_before(self, state: _State, deadline: float) -> bool:
        """While closing: whether an attempt can start before `deadline` (waiting out a backoff that ends
        before it); never while the breaker is open: the server is down, trying would only spend the
        caller's time."""
        if self._breaker.state is BreakerState.OPEN:
            return False
        wait = self._not_before - time.monotonic()
        if self._not_before >= deadline:
            return False
        if wait > 0:
            state.wake.wait(wait)
            state.wake.clear()
        return time.monotonic() < deadline

    def _next_batch(self, state: _State, *, flush_all: bool) -> _Batch | None:
        """The batch in flight (a retry), else a new one from the buffer; None when nothing waits."""
        with state.lock:
            if state.inflight is not None:
                return state.inflight
            if state.counters:
                self._move_counters(state, flush_all=flush_all or bool(state.flush_requested))
            if not state.buffer:
                state.flush_requested = 0
                return None
            items = [state.buffer.popleft() for _ in range(min(self._batch_size, len(state.buffer)))]
            occurrences = sum(item[5] for item in items)
            state.queued -= occurrences
            if not state.buffer:
                state.flush_requested = 0
            request = pb.RecordEventsRequest(producer_id=state.producer_id, batch_seq=state.next_seq)
            batch = _Batch(state.next_seq, request, occurrences)
            state.next_seq += 1
            state.inflight = batch
        _add_events(batch.request, items)  # outside the lock: record() goes on meanwhile
        return batch

    def _move_counters(self, state: _State, *, flush_all: bool) -> None:
        """Pre-aggregated counters of past seconds (all, when flushing) into the buffer as events."""
        now = int(time.time())
        for key in [key for key in state.counters if flush_all or key[2] < now]:
            total, count = state.counters.pop(key)
            name, attributes, second = key
            state.buffer.append((name, total, dict(attributes), "", second * 1_000_000_000, int(count)))

    def _send(self, state: _State, batch: _Batch) -> None:
        timeout = self._export_timeout
        if state.closing_deadline is not None:
            timeout = min(timeout, state.closing_deadline - time.monotonic())
            if timeout <= 0:
                return
        batch.attempts += 1
        try:
            response = self._channel().send_batch(batch.request, timeout=timeout)
        except MicrostateError as error:
            self._failed(state, batch, error)
            return
        except Exception as error:  # a closed channel (close() won the race), or a bug: retry or drop
            self._failed(state, batch, Unknown(str(error)))
            return
        self._breaker.record_success()
        self._backoff = INITIAL_BACKOFF
        hint = response.retry_after.ToTimedelta().total_seconds() if response.HasField("retry_after") else 0.0
        self._not_before = time.monotonic() + hint if hint > 0 else 0.0
        # What the server did not accept it rejected (accepted + rejected covers the batch); clamped, so a
        # server that miscounts cannot unbalance the accounting.
        accepted = min(response.accepted, batch.occurrences)
        self._resolve(state, batch, sent=accepted, reason=REJECTED, dropped=batch.occurrences - accepted)

    def _failed(self, state: _State, batch: _Batch, error: MicrostateError) -> None:
        if not isinstance(error, _RETRYABLE):
            log.warning("telemetry batch refused by the server: %s", error)
            self._resolve(state, batch, sent=0, reason=REJECTED, dropped=batch.occurrences)
            return
        self._breaker.record_failure()
        delay = self._backoff * random.uniform(0.8, 1.2)
        if error.retry_delay:
            delay = max(delay, error.retry_delay)
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        self._not_before = time.monotonic() + delay
        if batch.attempts >= self._max_attempts:
            self._resolve(state, batch, sent=0, reason=RETRIES_EXHAUSTED, dropped=batch.occurrences)

    def _resolve(self, state: _State, batch: _Batch, *, sent: int, reason: str, dropped: int) -> None:
        with state.lock:
            if batch.done:  # close() already counted it (shutdown)
                return
            batch.done = True
            state.inflight = None
            state.sent += sent
            state.dropped[reason] += dropped
            state.changed.notify_all()

    def _log_drops(self, state: _State) -> None:
        dropped = sum(state.dropped.values())
        if dropped == self._logged_drops:
            return
        now = time.monotonic()
        if self._logged_drops == 0:
            log.warning(
                "telemetry is dropping events (%s); a summary follows at most once a minute",
                dict(state.dropped),
            )
        elif now < self._next_summary:
            return
        else:
            log.warning(
                "telemetry dropped %d more events; totals %s",
                dropped - self._logged_drops,
                dict(state.dropped),
            )
        self._logged_drops = dropped
        self._next_summary = now + SUMMARY_INTERVAL

    def _new_breaker(self) -> CircuitBreaker:
        """The client options' breaker (a recorder always has one: it stops sending while the server is
        down, then probes)."""
        options = self._breaker_options
        threshold = options.failure_threshold or _options.DEFAULT_BREAKER_FAILURE_THRESHOLD
        return CircuitBreaker(threshold, options.reset_timeout)

    # -- fork and exit --------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """The child forgets the parent's events, thread, lock and channel (the parent still sends them)
        and starts afresh, with a producer id of its own, at its first record()."""
        self._state = _State()
        self._client = None  # the parent's channel is not the child's to use or close
        self._breaker = self._new_breaker()
        self._not_before, self._backoff, self._logged_drops = 0.0, INITIAL_BACKOFF, 0


YIELD_EVERY: Final = 32
"""Events the worker encodes between two releases of the GIL, so an application thread that wants it waits
tens of microseconds, not the whole batch (CPython would make it wait up to its 5 ms switch interval)."""


def _add_events(request: pb.RecordEventsRequest, items: list[Item]) -> None:
    add = request.events.add
    for done, (name, value, attributes, subject_id, time_ns, count) in enumerate(items, 1):
        event = add(name=name, value=value, time_unix_nano=time_ns)
        if subject_id:
            event.subject_id = subject_id
        if count > 1:
            event.count = count
        if attributes:
            event.attributes.update(attributes)
        if done % YIELD_EVERY == 0:
            time.sleep(0)  # releases the GIL: the application's threads run first


def _reset_in_child() -> None:
    for client in list(_open):
        client._after_fork_in_child()


def _close_all_at_exit() -> None:
    deadline = time.monotonic() + EXIT_BUDGET
    for client in list(_open):
        client.close(max(0.0, deadline - time.monotonic()))


os.register_at_fork(after_in_child=_reset_in_child)
atexit.register(_close_all_at_exit)
