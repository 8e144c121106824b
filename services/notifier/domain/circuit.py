"""A circuit breaker per SMS gateway (DESIGN.md "SMS gateways: failover").

After ``failures`` consecutive definite failures (connection refused, 5xx, 429) the circuit
opens for ``open_s`` seconds: no call goes to that gateway. Then one probe is let through; its
answer decides whether the circuit closes (accepted) or opens again (anything else). A time-out
neither counts as a failure nor closes the circuit: it says nothing about the gateway's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # the open time is over; one probe decides


class CircuitBreaker:
    def __init__(
        self, *, failures: int = 5, open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.failures, self.open_s, self.clock = failures, open_s, clock
        self.on_change = on_change
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self.clock() - self._opened_at < self.open_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def available(self) -> bool:
        """Would a call be let through now (without taking the probe)?"""
        state = self.state
        return state == CircuitState.CLOSED or (state == CircuitState.HALF_OPEN and not self._probing)

    def acquire(self) -> bool:
        """Take permission for one call: always when closed, once (the probe) when half-open."""
        state = self.state
        if state == CircuitState.CLOSED:
            return True
        if state == CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def release(self) -> None:
        """Give back a permission that was not used for a call."""
        self._probing = False

    def reopens_in(self) -> float:
        """Seconds until the circuit lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.open_s - self.clock())

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        self._consecutive, self._opened_at, self._probing = 0, None, False
        if was_open:
            self._changed(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """A definite failure."""
        if self._probing or self.state == CircuitState.HALF_OPEN:
            self._open()
            return
        if self._opened_at is not None:  # a call that started before the circuit opened
            return
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self._open()

    def record_inconclusive(self) -> None:
        """A time-out: the gateway may have taken the call. A probe that times out reopens."""
        if self._probing:
            self._open()

    def _open(self) -> None:
        self._opened_at, self._probing, self._consecutive = self.clock(), False, 0
        self._changed(CircuitState.OPEN)

    def _changed(self, state: CircuitState) -> None:
        if self.on_change is not None:
            self.on_change(state)
