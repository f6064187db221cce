"""Settle a finished request: summarise its context, once, as a typed ``Settlement``."""

from __future__ import annotations

from collections.abc import Sequence

from sluice.base.settlement import Settlement
from sluice.core.context import RequestContext
from sluice.errors import GatewayError
from sluice.pricing import Pricing


class _NoKey:
    """Who a request tied to no key stands for: nobody (every field None)."""

    id = principal = project = team = organization = display_prefix = None


_NO_KEY = _NoKey()


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(0, round(seconds * 1000))


def _since(started: float, at: float | None) -> int | None:
    return None if at is None else _ms(at - started)


def settle_request(
    ctx: RequestContext,
    finished: float,
    pricing: Pricing,
    *,
    budget_warnings: Sequence[str] = (),
    refusal: GatewayError | None = None,
) -> Settlement:
    """``finished``: monotonic seconds; ``refusal``: the error the request was refused with."""
    usage = ctx.facts.usage
    cost, counted = _spend(ctx, pricing)
    dimension, reason = (None, None) if refusal is None else _refusal_detail(refusal)
    key = ctx.key or _NO_KEY  # who it stands for, as the ledger keeps it (never the key)
    return Settlement(
        request_id=ctx.request_id,
        created_at=ctx.started_ms,
        vk_id=key.id,
        principal=key.principal,
        project=key.project,
        team=key.team,
        organization=key.organization,
        key_prefix=key.display_prefix,
        session_id=ctx.session_id,
        endpoint=ctx.endpoint,
        provider=ctx.provider_id,
        model_requested=ctx.model_requested,
        model_sent=ctx.model_sent,
        streaming=ctx.stream,
        status=ctx.status,
        # A started stream that got an upstream `event: error` keeps its 200, with its type.
        error_code=ctx.error_code or ctx.facts.stream_error_type,
        stop_reason=ctx.facts.stop_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_creation_tokens=usage.cache_creation_tokens,
        cache_creation_5m_tokens=usage.cache_creation_5m_tokens,
        cache_creation_1h_tokens=usage.cache_creation_1h_tokens,
        upstream_request_id=ctx.upstream_request_id,
        upstream_latency_ms=_since(ctx.started, ctx.upstream_headers_at),
        ttft_ms=_since(ctx.started, ctx.facts.first_token_at),
        duration_ms=_ms(finished - ctx.started) or 0,
        client_disconnected=ctx.client_disconnected,
        attempts=ctx.attempts,
        fallback_path=" > ".join(ctx.attempt_log) if len(ctx.attempt_log) > 1 else None,
        policy_violation=ctx.policy_violation,
        cost_micros=cost,
        budget_micros=counted,
        request_class=ctx.request_class,  # Claude Code's gateway hints
        agent_id=ctx.agent_id,
        parent_agent_id=ctx.parent_agent_id,
        ingress=ctx.ingress,
        provider_kind=ctx.provider_kind,
        model_declared=ctx.model_known or _key_alias(ctx),
        usage_seen=usage.seen,
        response_error_code=ctx.error_code,
        budget_warnings=tuple(budget_warnings) if budget_warnings else (),
        rate_limit_dimension=dimension,
        auth_failure_reason=reason,
    )


def _spend(ctx: RequestContext, pricing: Pricing) -> tuple[int | None, int]:
    """(cost, what budgets count): priced as the upstream bills it, by its own model id (a
    Bedrock profile, an OpenAI model). No usage costs 0; usage without a price has no cost,
    and budgets count it at a fallback price. A stream the upstream ended with ``event: error``
    costs 0 (its tokens are kept): no message was completed, Claude Code's cost leaves it out
    and re-sends the request, and that retry is the attempt that counts."""
    if ctx.facts.stream_error_type is not None:
        return 0, 0
    usage = ctx.facts.usage
    model = ctx.upstream_model or ctx.model_sent
    priced = bool(ctx.provider_kind and model and usage.seen)
    cost = (
        pricing.cost_micros(ctx.provider_kind or "", model or "", usage)
        if priced
        else (0 if not usage.seen else None)
    )
    if cost is not None:
        return cost, cost
    return cost, pricing.budget_micros(ctx.provider_kind or "", model or "", usage)


def _key_alias(ctx: RequestContext) -> bool:
    """The model sent is one of the key's own aliases (its name or its target): declared by an
    admin, so a metrics label (a provider's or resolution's declaration is ``model_known``)."""
    model, key = ctx.model_sent, ctx.key
    if not model or key is None:
        return False
    aliases = key.config.model_aliases
    return model in aliases or model in aliases.values()


def _refusal_detail(refusal: GatewayError) -> tuple[str | None, str | None]:
    """(rate-limit dimension, invalid key's reason): what metrics count a refusal by. The
    reason is an attribute the client never sees."""
    if refusal.code == "rate_limited":
        return str(refusal.meta.get("dimension", "")), None
    if refusal.code == "invalid_api_key":
        return None, str(getattr(refusal, "reason", ""))
    return None, None
