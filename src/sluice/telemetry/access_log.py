"""The access log: one structured line per request (logger ``sluice.access``).

It carries identities only as display prefixes and ids, never a key or a header value; the
JSON formatter (sluice.logs) still scrubs anything key-shaped as a second line of defence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sluice.base.settlement import Settlement

access_log = logging.getLogger("sluice.access")


class LogSampler:
    """At most ``per_second`` lines a second (0: none); the next line let through carries how
    many were held back. For floods (unauthenticated requests) that must not flood the log."""

    def __init__(self, per_second: int, now: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_second
        self._now = now
        self._second = -1
        self._used = 0
        self.suppressed = 0  # held back since the last line let through

    def admit(self) -> int | None:
        """None: hold this line back; else log it, with the lines held back before it."""
        second = int(self._now())
        if second != self._second:
            self._second, self._used = second, 0
        if self._used < self._limit:
            self._used += 1
            held, self.suppressed = self.suppressed, 0
            return held
        self.suppressed += 1
        return None


def log_request(settled: Settlement, suppressed: int | None = None) -> None:
    """``suppressed``: lines a sampler held back before this one (logged when not None)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    cost = settled.cost_micros
    access_log.info(
        "request",
        extra={
            "request_id": settled.request_id,
            "endpoint": settled.endpoint,
            "key_prefix": settled.key_prefix,
            "vk_id": settled.vk_id,
            "principal": settled.principal,
            "provider": settled.provider,
            "model": settled.model_sent,
            "status": settled.status,
            "error_code": settled.response_error_code,
            "input_tokens": settled.input_tokens,
            "output_tokens": settled.output_tokens,
            "cache_read_tokens": settled.cache_read_tokens,
            "cache_write_tokens": settled.cache_creation_tokens,
            "cost_micros": cost,
            "cost_usd": None if cost is None else cost / 1_000_000,
            "duration_ms": settled.duration_ms,
            "upstream_latency_ms": settled.upstream_latency_ms,
            "ttft_ms": settled.ttft_ms,
            "attempts": settled.attempts,
            "stream": settled.streaming,
            "client_disconnected": settled.client_disconnected,
            **({} if suppressed is None else {"sampled": True, "suppressed": suppressed}),
        },
    )
