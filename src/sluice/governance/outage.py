"""What each Redis-backed feature does while Redis is unreachable, and which are degraded.

Every feature that keeps state in Redis (budget counters, rate limits, remembered tool
verdicts, webhook dedupe) has a configured outcome (``redis_outage:``): ``closed`` refuses the
request with 503 ``<feature>_unavailable``, ``open`` goes on without the feature. Never a 500.
/readyz names the degraded features; nothing needs a restart when Redis comes back (each call
reconnects).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sluice.backends.protocols import BackendUnavailable
from sluice.config.models import Outcome, RedisOutageConfig

__all__ = ["FEATURES", "OUTAGE_ERRORS", "Outage", "Outcome"]

log = logging.getLogger("sluice.redis")

# What a backend call raises when its shared store is down, slow or half-reachable.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (BackendUnavailable,)
FEATURES = ("budgets", "rate_limits", "verdicts", "webhook_dedupe")
RECENT_S = 5.0  # a feature that failed this recently is still reported degraded
LOG_EVERY_S = 10.0  # one log line per feature per this many seconds, not one per request


class Outage:
    def __init__(
        self,
        config: RedisOutageConfig | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or RedisOutageConfig()
        self._monotonic = monotonic
        self._failed_at: dict[str, float] = {}
        self._logged_at: dict[str, float] = {}

    def outcome(self, feature: str) -> Outcome:
        value: Outcome = getattr(self._config, feature)
        return value

    def failed(self, feature: str, exc: BaseException) -> Outcome:
        """Record a failed Redis call of ``feature``; returns the feature's outcome."""
        now = self._monotonic()
        self._failed_at[feature] = now
        outcome = self.outcome(feature)
        last = self._logged_at.get(feature)
        if last is None or now - last >= LOG_EVERY_S:
            self._logged_at[feature] = now
            log.error(
                "redis unreachable (%s): %s fail %s",
                type(exc.__cause__ or exc).__name__,  # the client's own error
                feature,
                outcome,
                extra={"feature": feature, "outcome": outcome},
            )
        return outcome

    def degraded(self, redis_up: bool | None) -> dict[str, Outcome]:
        """Feature -> its outcome in effect: all of them while Redis does not answer, else
        those that failed within the last few seconds. None: no Redis is configured."""
        if redis_up is None:
            return {}
        now = self._monotonic()
        recent = {f for f, at in self._failed_at.items() if now - at < RECENT_S}
        return {f: self.outcome(f) for f in FEATURES if not redis_up or f in recent}
