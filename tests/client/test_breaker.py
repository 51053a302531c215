"""The circuit breaker's state machine, on a clock the test controls."""

from __future__ import annotations

from microstate.client._breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 10.0, Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # not consecutive any more
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()


def test_half_open_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # the probe is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_failed_probe_reopens_for_a_full_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 10.0, clock)
    for _ in range(5):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()  # one failure suffices in half-open
    assert breaker.state is BreakerState.OPEN
    clock.now += 9
    assert not breaker.allow()


def test_a_lost_probe_does_not_wedge_the_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()  # the probe's caller is cancelled and never reports
    clock.now += 10
    assert breaker.allow()


def test_no_threshold_means_no_breaker() -> None:
    breaker = CircuitBreaker(None, 1.0, Clock())
    for _ in range(1000):
        breaker.record_failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
