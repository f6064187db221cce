"""One fallback path: a request without a chain walks a one-element one under ``SINGLE``."""

from __future__ import annotations

import dataclasses

from sluice.config.models import CircuitBreakerConfig
from sluice.config.vk import FallbackConfig, VirtualKeyConfig
from sluice.core.breaker import OPEN, CircuitBreaker
from sluice.core.context import RequestContext
from sluice.core.fallback import FallbackSender
from sluice.core.router import SINGLE, ChainPolicy, Plan, Router
from sluice.governance.virtual_key import VirtualKey
from sluice.providers.base import ModelInfo, UpstreamRequest, UpstreamResponse
from sluice.providers.transport import whole_response

MODEL = "claude-opus-4-8"


class Scripted:
    """A provider answering each attempt with the next status of its script."""

    kind = "anthropic"

    def __init__(self, provider_id: str, *statuses: int, counts: bool = True) -> None:
        self.id = provider_id
        self.statuses = list(statuses)
        self.counts = counts
        self.sent: list[UpstreamRequest] = []

    def model_id_for(self, model: str) -> str | None:
        return model

    def can_count_tokens(self, model: str) -> bool:
        return self.counts

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append(request)
        return whole_response(self.statuses.pop(0), b"{}", [], None)

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def close(self) -> None:
        return None


def _ctx(endpoint: str = "messages") -> RequestContext:
    body = b'{"model":"claude-opus-4-8","messages":[]}'
    ctx = RequestContext("req_1", endpoint, "/v1/messages", "", [], 0.0, 0, body, body)
    ctx.model_sent = MODEL
    return ctx


def _breaker(provider_id: str) -> CircuitBreaker:
    return CircuitBreaker(provider_id, CircuitBreakerConfig(), lambda: 0.0)


async def test_single_provider_is_sent_even_with_its_circuit_open() -> None:
    only = Scripted("only", 529)
    breaker = _breaker("only")
    breaker.state, breaker.opened_at = OPEN, 0.0
    ctx = _ctx()
    upstream = await FallbackSender({"only": breaker}).send(ctx, Plan((only,), SINGLE))
    assert upstream.status == 529  # returned as it came: nowhere to fall back to
    assert [r.attempt for r in only.sent] == [1] and only.sent[0].model == MODEL
    assert (ctx.provider_id, ctx.upstream_model, ctx.attempts) == ("only", MODEL, 1)
    assert ctx.response_headers == []


async def test_a_chain_moves_on_and_numbers_its_attempts() -> None:
    first, second = Scripted("first", 529), Scripted("second", 200)
    policy = ChainPolicy.of(FallbackConfig(chain=["first", "second"]))
    breakers = {"first": _breaker("first"), "second": _breaker("second")}
    ctx = _ctx()
    upstream = await FallbackSender(breakers).send(ctx, Plan((first, second), policy))
    assert upstream.status == 200
    assert [r.attempt for r in first.sent + second.sent] == [1, 2]
    assert (ctx.provider_id, ctx.attempts) == ("second", 2)
    assert ctx.attempt_log == ["first:529", "second:200"]
    assert ctx.response_headers == [(b"x-langwatch-fallback-count", b"1")]


def test_the_router_plans_single_providers_chains_and_counters() -> None:
    a, b = Scripted("a", counts=False), Scripted("b", counts=False)
    router = Router({"a": a, "b": b})
    plan = router.plan(_ctx())
    assert plan == Plan((a,), SINGLE)
    assert router.plan(_ctx("count_tokens")) is None  # nobody counts: the caller estimates
    b.counts = True
    assert router.plan(_ctx("count_tokens")) == Plan((b,), SINGLE)


def test_allowed_providers_follow_a_changed_key_and_a_swapped_project() -> None:
    """The allowed list is remembered per key object: a key change (a new object, as every
    reload makes) and a project's providers swapped whole are both seen at once."""
    a, b = Scripted("a", 200), Scripted("b", 200)
    router = Router({"a": a, "b": b})
    key = VirtualKey("k1", "n", "live", "p", "h", "active", 0, 0, project="proj")
    assert [p.id for p in router.allowed_for(key)] == ["a", "b"]
    narrowed = dataclasses.replace(key, config=VirtualKeyConfig(providers_allowed=["b"]))
    assert [p.id for p in router.allowed_for(narrowed)] == ["b"]
    own_b = Scripted("b", 200)
    router.by_project = {"proj": {"a": a, "b": own_b}}
    assert router.allowed_for(narrowed) == [own_b]
