"""A consecutive-failure circuit breaker, safe to share between threads.

closed --N consecutive failures--> open --reset_timeout--> half-open: one probe goes through;
its success closes the breaker, its failure opens it again. A probe whose outcome never arrives (the
caller was cancelled) does not wedge the breaker: after another reset_timeout the next call probes.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int | None,
        reset_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._since = 0.0  # when the breaker opened, or when the current probe started

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the service now. In half-open, True claims the one probe."""
        if self._state is BreakerState.CLOSED:  # the common case, read without the lock
            return True
        if self._clock() - self._since < self._reset_timeout:  # open: a stale read only delays a probe
            return False
        with self._lock:
            return self._claim_probe()

    def _claim_probe(self) -> bool:
        if self._state is BreakerState.CLOSED:  # closed by another thread meanwhile
            return True
        now = self._clock()
        if now - self._since < self._reset_timeout:
            return False
        self._state, self._since = BreakerState.HALF_OPEN, now
        return True

    def record_success(self) -> None:
        if self._state is BreakerState.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._state, self._failures = BreakerState.CLOSED, 0

    def record_failure(self) -> None:
        if self._threshold is None:
            return
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
                self._state, self._since = BreakerState.OPEN, self._clock()
