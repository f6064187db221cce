"""Settle a finished request: turn its context into a ledger row."""

from __future__ import annotations

from typing import Any

from sluice.core.context import RequestContext
from sluice.pricing import Pricing


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, round(seconds * 1000))


def ledger_row(ctx: RequestContext, finished: float, pricing: Pricing) -> dict[str, Any]:
    key = ctx.key
    usage = ctx.facts.usage
    # Priced as the upstream bills it: its own model id (a Bedrock profile, an OpenAI model).
    model = ctx.upstream_model or ctx.model_sent
    priced = bool(ctx.provider_kind and model and usage.seen)
    cost = (
        pricing.cost_micros(ctx.provider_kind or "", model or "", usage)
        if priced
        else (0 if not usage.seen else None)
    )
    counted = (
        cost
        if cost is not None
        else pricing.budget_micros(ctx.provider_kind or "", model or "", usage)
    )
    first_token = ctx.facts.first_token_at
    return {
        "request_id": ctx.request_id,
        "created_at": ctx.started_ms,
        "vk_id": key.id if key else None,
        "principal": key.principal if key else None,
        "project": key.project if key else None,
        "team": key.team if key else None,
        "organization": key.organization if key else None,
        "session_id": ctx.session_id,
        "endpoint": ctx.endpoint,
        "provider": ctx.provider_id,
        "model_requested": ctx.model_requested,
        "model_sent": ctx.model_sent,
        "streaming": ctx.stream,
        "status": ctx.status,
        # A stream that started (200) and then got an upstream `event: error` keeps its 200;
        # the event's error type says what went wrong.
        "error_code": ctx.error_code or ctx.facts.stream_error_type,
        "stop_reason": ctx.facts.stop_reason,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_creation_tokens": usage.cache_creation_tokens,
        "cache_creation_5m_tokens": usage.cache_creation_5m_tokens,
        "cache_creation_1h_tokens": usage.cache_creation_1h_tokens,
        "upstream_request_id": ctx.upstream_request_id,
        "upstream_latency_ms": _ms(
            None if ctx.upstream_headers_at is None else ctx.upstream_headers_at - ctx.started
        ),
        "ttft_ms": _ms(None if first_token is None else first_token - ctx.started),
        "duration_ms": _ms(finished - ctx.started) or 0,
        "client_disconnected": ctx.client_disconnected,
        "attempts": ctx.attempts,
        "fallback_path": " > ".join(ctx.attempt_log) if len(ctx.attempt_log) > 1 else None,
        "policy_violation": ctx.policy_violation,
        "cost_micros": cost,
        "budget_micros": counted,
    }
