"""Circuit breakers, one per provider credential (a configured provider is one credential).

``failure_threshold`` failures within ``window_s`` open the circuit: the router skips that
provider without calling it. After ``cooldown_s`` the circuit half-opens and lets exactly one
request through as a probe; its success closes the circuit, its failure opens it again for
another cooldown. Failures are the fallback triggers (5xx, 429, timeout, network); a 4xx is the
caller's fault and never counts. State is per process: each replica learns on its own, which
costs at most ``failure_threshold`` failed requests per replica per outage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice.config.models import CircuitBreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class CircuitBreaker:
    provider_id: str
    config: CircuitBreakerConfig
    now: Callable[[], float]  # monotonic seconds (injected, so tests need no sleeping)
    # Called with (provider_id, new_state) on every transition: metrics, logs.
    on_change: Callable[[str, str], None] | None = None
    state: str = CLOSED
    opened_at: float = 0.0
    probing: bool = False
    _failures: deque[float] = field(default_factory=deque)

    def allow(self) -> bool:
        """May a request go to this provider now? Half-open admits one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self.now() - self.opened_at < self.config.cooldown_s:
                return False
            self._move(HALF_OPEN)
        if self.probing:
            return False
        self.probing = True
        return True

    def success(self) -> None:
        self.probing = False
        if self.state != CLOSED:
            self._failures.clear()
            self._move(CLOSED)

    def failure(self) -> None:
        now = self.now()
        self.probing = False
        if self.state == HALF_OPEN:
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.config.window_s:
            self._failures.popleft()
        if self.state == CLOSED and len(self._failures) >= self.config.failure_threshold:
            self._open(now)

    def release(self) -> None:
        """The attempt ended with neither verdict (a terminal 4xx, a cancelled request): free
        the probe slot without judging the provider."""
        self.probing = False

    def snapshot(self) -> dict[str, object]:
        retry_in = 0.0
        if self.state == OPEN:
            retry_in = max(0.0, self.config.cooldown_s - (self.now() - self.opened_at))
        return {
            "state": self.state,
            "recent_failures": len(self._failures),
            "retry_in_s": round(retry_in, 1),
        }

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._failures.clear()
        self._move(OPEN)

    def _move(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(self.provider_id, state)
