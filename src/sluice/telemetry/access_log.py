"""The access log: one structured line per request (logger ``sluice.access``).

It carries identities only as display prefixes and ids, never a key or a header value; the
JSON formatter (sluice.logs) still scrubs anything key-shaped as a second line of defence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sluice.core.context import RequestContext

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


def log_request(ctx: RequestContext, row: dict[str, Any], suppressed: int | None = None) -> None:
    """``suppressed``: lines a sampler held back before this one (logged when not None)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    cost = row["cost_micros"]
    access_log.info(
        "request",
        extra={
            "request_id": ctx.request_id,
            "endpoint": ctx.endpoint,
            "key_prefix": ctx.key.display_prefix if ctx.key else None,
            "vk_id": row["vk_id"],
            "principal": row["principal"],
            "provider": ctx.provider_id,
            "model": ctx.model_sent,
            "status": ctx.status,
            "error_code": ctx.error_code,
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "cache_read_tokens": row["cache_read_tokens"],
            "cache_write_tokens": row["cache_creation_tokens"],
            "cost_micros": cost,
            "cost_usd": None if cost is None else cost / 1_000_000,
            "duration_ms": row["duration_ms"],
            "upstream_latency_ms": row["upstream_latency_ms"],
            "ttft_ms": row["ttft_ms"],
            "attempts": ctx.attempts,
            "stream": ctx.stream,
            "client_disconnected": ctx.client_disconnected,
            **({} if suppressed is None else {"sampled": True, "suppressed": suppressed}),
        },
    )
