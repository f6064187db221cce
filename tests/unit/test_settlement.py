"""The Settlement: built once from a finished request's context; the ledger row, the counters'
totals and what observers read (budget decision, policy violation, refusal detail)."""

from __future__ import annotations

import msgspec

from sluice.base.settlement import LEDGER_COLUMNS, Settlement
from sluice.config.vk import VirtualKeyConfig
from sluice.core.context import RequestContext
from sluice.core.settle import settle_request
from sluice.errors import RateLimited
from sluice.governance.virtual_key import VirtualKey
from sluice.pricing import Pricing
from sluice.store.tables import ledger
from sluice.telemetry.labels import ModelLabels
from sluice.telemetry.spans import Finished, chat_span
from sluice.telemetry.turns import detect_turn

MODEL = "claude-sonnet-4-5-20250929"


def key(aliases: dict[str, str] | None = None) -> VirtualKey:
    config = VirtualKeyConfig.parse({"model_aliases": aliases or {}})
    return VirtualKey(
        "vk_1", "k", "live", "sk-lw-abc", "h", "active", 0, 0, project="p", config=config
    )


def context() -> RequestContext:
    ctx = RequestContext("req_1", "messages", "/v1/messages", "", [], 10.0, 1_000)
    ctx.key = key()
    ctx.model_requested = ctx.model_sent = MODEL
    ctx.provider_id, ctx.provider_kind = "primary", "anthropic"
    ctx.stream, ctx.status, ctx.attempts = True, 200, 2
    ctx.attempt_log = ["backup:529", "primary:200"]
    ctx.upstream_headers_at = 10.25
    ctx.facts.first_token_at = 10.5
    ctx.facts.stop_reason = "end_turn"
    ctx.facts.usage.apply({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 20})
    ctx.policy_violation = "policy_rules.tools.deny: ^Bash$"
    return ctx


def test_ledger_columns_are_the_ledger_tables() -> None:
    assert tuple(ledger.c.keys()) == LEDGER_COLUMNS
    assert set(LEDGER_COLUMNS) <= set(Settlement.__struct_fields__)


def test_a_finished_request_settles_into_its_ledger_row() -> None:
    ctx = context()
    ctx.facts.stream_error_type = "overloaded_error"
    settled = settle_request(ctx, 11.0, Pricing(), budget_warnings=["project:85"])
    row = settled.ledger_row()
    assert list(row) == list(LEDGER_COLUMNS)
    cost = Pricing().cost_micros("anthropic", MODEL, context().facts.usage)
    assert cost
    assert row == {
        **dict.fromkeys(LEDGER_COLUMNS),
        "request_id": "req_1",
        "created_at": 1_000,
        "vk_id": "vk_1",
        "project": "p",
        "endpoint": "messages",
        "provider": "primary",
        "model_requested": MODEL,
        "model_sent": MODEL,
        "streaming": True,
        "status": 200,
        "error_code": "overloaded_error",  # the stream's error event: the response kept 200
        "stop_reason": "end_turn",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 20,
        "cache_creation_tokens": 0,
        "cache_creation_5m_tokens": 0,
        "cache_creation_1h_tokens": 0,
        "upstream_latency_ms": 250,
        "ttft_ms": 500,
        "duration_ms": 1000,
        "client_disconnected": False,
        "attempts": 2,
        "fallback_path": "backup:529 > primary:200",
        "policy_violation": "policy_rules.tools.deny: ^Bash$",
        # The upstream ended the stream with an error event: tokens kept, nothing charged
        # (Claude Code's cost leaves it out and re-sends; its retry is what counts).
        "cost_micros": 0,
        "budget_micros": 0,
        "ingress": "anthropic",  # the native door
    }
    completed = settle_request(context(), 11.0, Pricing())
    assert (completed.cost_micros, completed.budget_micros) == (cost, cost)
    assert settled.ledger_values() == tuple(row.values())
    assert settled.total_tokens == 35  # what token rate limits count
    assert settled.response_error_code is None  # the access log's error: the response's own
    assert settled.key_prefix == "sk-lw-abc" and settled.usage_seen
    assert settled.budget_decision == "soft_warn"


def test_unpriced_usage_has_no_cost_but_counts_for_budgets() -> None:
    ctx = context()
    ctx.model_sent = "claude-invented-20990101"
    settled = settle_request(ctx, 11.0, Pricing())
    assert settled.cost_micros is None and settled.budget_micros > 0
    assert settled.budget_decision == "allowed"
    ctx.facts.usage = type(ctx.facts.usage)()  # no usage reported: costs nothing
    assert settle_request(ctx, 11.0, Pricing()).cost_micros == 0


def test_a_refusal_carries_its_detail() -> None:
    ctx = RequestContext("req_2", "messages", "/v1/messages", "", [], 10.0, 1_000)
    ctx.key = key()
    ctx.status, ctx.error_code = 429, "rate_limited"
    refusal = RateLimited("slow down", meta={"dimension": "tpm"})
    settled = settle_request(ctx, 10.0, Pricing(), refusal=refusal)
    assert settled.rate_limit_dimension == "tpm" and settled.auth_failure_reason is None
    assert settled.response_error_code == settled.error_code == "rate_limited"
    assert settled.duration_ms == 0 and settled.cost_micros == 0
    ctx.error_code = "budget_exceeded"
    assert settle_request(ctx, 10.0, Pricing()).budget_decision == "blocked"


def test_model_labels_read_the_declared_model() -> None:
    labels = ModelLabels()
    ctx = context()
    ctx.model_sent = "claude-made-up-20250101"
    assert labels.model(settle_request(ctx, 11.0, Pricing())) == "other"
    ctx.key = key({"fast": "claude-made-up-20250101"})  # an alias's target, declared by an admin
    assert labels.model(settle_request(ctx, 11.0, Pricing())) == "claude-made-up-20250101"
    ctx.provider_id = None  # not routed: no label
    assert labels.model(settle_request(ctx, 11.0, Pricing())) == ""


def test_spans_read_the_budget_decision_and_violation_from_the_settlement() -> None:
    ctx = context()
    ctx.facts.stream_error_type = "overloaded_error"
    raw = msgspec.Raw(msgspec.json.encode([{"role": "user", "content": "hi"}]))
    ctx.messages_raw = raw
    turn = detect_turn(raw, "s1", ctx.request_id)
    settled = settle_request(ctx, 11.0, Pricing(), budget_warnings=["project:85"])
    assert not ctx.response_headers  # nothing to scan: the decision is a field
    span = chat_span(Finished.of(ctx, settled, turn, "s1", "a", False), turn, "s1", "a", False)
    assert span.attributes["langwatch.budget.decision"] == "soft_warn"
    assert span.attributes["langwatch.policy.violation"] == "policy_rules.tools.deny: ^Bash$"
    assert span.attributes["error.type"] == "overloaded_error"
    assert span.cost_micros == settled.cost_micros and span.input_tokens == 30
    assert span.key_id == "vk_1" and span.project == "p" and span.request_id == "req_1"
