"""The access log: one structured line per request (logger ``sluice.access``).

It carries identities only as display prefixes and ids, never a key or a header value; the
JSON formatter (sluice.logs) still scrubs anything key-shaped as a second line of defence.
"""

from __future__ import annotations

import logging
from typing import Any

from sluice.core.context import RequestContext

access_log = logging.getLogger("sluice.access")


def log_request(ctx: RequestContext, row: dict[str, Any]) -> None:
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
        },
    )
