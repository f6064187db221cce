"""The circuit breaker's states, on an injected clock."""

from __future__ import annotations

from sluice.config.models import CircuitBreakerConfig
from sluice.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _breaker(clock: Clock, changes: list[tuple[str, str]]) -> CircuitBreaker:
    config = CircuitBreakerConfig(failure_threshold=3, window_s=10, cooldown_s=5)
    return CircuitBreaker("p", config, clock, lambda pid, state: changes.append((pid, state)))


def test_failures_in_the_window_open_it_and_old_ones_expire() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    b.failure()
    b.failure()
    clock.t += 11  # both fell out of the window
    b.failure()
    b.failure()
    assert b.state == CLOSED and b.allow()
    b.failure()
    assert b.state == OPEN and not b.allow()
    assert changes == [("p", OPEN)]
    assert b.snapshot() == {"state": OPEN, "recent_failures": 0, "retry_in_s": 5.0}


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    for _ in range(3):
        b.failure()
    clock.t += 4.9
    assert not b.allow()
    clock.t += 0.2
    assert b.allow() and b.state == HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.success()
    assert b.state == CLOSED and b.allow() and b.allow()
    assert changes == [("p", OPEN), ("p", HALF_OPEN), ("p", CLOSED)]


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    clock, changes = Clock(), []
    b = _breaker(clock, changes)
    for _ in range(3):
        b.failure()
    clock.t += 5
    assert b.allow()
    b.failure()
    assert b.state == OPEN and not b.allow()
    clock.t += 5
    assert b.allow()
    b.release()  # a probe that ended with a 4xx: no verdict, the slot is free again
    assert b.allow()
