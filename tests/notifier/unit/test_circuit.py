"""The circuit breaker of an SMS gateway."""

from __future__ import annotations

from services.notifier.domain.model import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_consecutive_definite_failures_and_one_probe_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=5, open_s=30, clock=clock)
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()  # not consecutive
    for _ in range(4):
        breaker.record_failure()
        breaker.record_inconclusive()  # a time-out neither counts nor resets
    assert breaker.state == CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state == CircuitState.OPEN and not breaker.acquire()
    clock.now = 29.9
    assert not breaker.acquire()
    clock.now = 30.0
    assert breaker.acquire() and not breaker.acquire()  # one probe only
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == CircuitState.OPEN and breaker.reopens_in() == 30
    clock.now = 60.0
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state == CircuitState.CLOSED and breaker.acquire() and breaker.acquire()
