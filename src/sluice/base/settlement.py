"""The Settlement: one typed summary of a finished request, built once when it settles.

Everything downstream of the request path reads this one value: the ledger writer turns it
into its row (``LEDGER_COLUMNS`` are exactly the ledger table's columns), budgets and rate
limits settle on its spend and token totals, and telemetry (metrics, the access log, the span
hand-over) observes it. So the budget decision, the policy violation and a refusal's detail
are fields here, never headers or exceptions to inspect later.

A msgspec Struct: built in C (a request pays well under a microsecond for ~40 fields), frozen,
and encoded as it is when handed to the span-sink process.
"""

from __future__ import annotations

from operator import attrgetter

import msgspec

# The ledger row, in the ledger table's column order (store/ledger_sqlite.py checks the names
# against the table at import; tests check that they are all of its columns).
LEDGER_COLUMNS = (
    "request_id",
    "created_at",
    "vk_id",
    "principal",
    "project",
    "team",
    "organization",
    "session_id",
    "endpoint",
    "provider",
    "model_requested",
    "model_sent",
    "streaming",
    "status",
    "error_code",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cache_creation_5m_tokens",
    "cache_creation_1h_tokens",
    "upstream_request_id",
    "upstream_latency_ms",
    "ttft_ms",
    "duration_ms",
    "client_disconnected",
    "attempts",
    "fallback_path",
    "policy_violation",
    "cost_micros",
    "budget_micros",
    "request_class",
    "agent_id",
    "parent_agent_id",
    "ingress",
)


class Settlement(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One finished request. The first block is the ledger row; the rest is what observers
    need besides (never written to the ledger)."""

    # --- the ledger row ---------------------------------------------------------------
    request_id: str
    created_at: int  # wall clock ms
    vk_id: str | None = None
    principal: str | None = None
    project: str | None = None
    team: str | None = None
    organization: str | None = None
    session_id: str | None = None
    endpoint: str  # messages | count_tokens
    provider: str | None = None  # the configured provider id that answered (or last tried)
    model_requested: str | None = None
    model_sent: str | None = None
    streaming: bool = False
    status: int = 0
    # The response's error, or the error event that ended a stream that had started (200).
    error_code: str | None = None
    stop_reason: str | None = None
    input_tokens: int = 0  # uncached, as on Anthropic's wire
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    upstream_request_id: str | None = None
    upstream_latency_ms: int | None = None
    ttft_ms: int | None = None
    duration_ms: int = 0
    client_disconnected: bool = False
    attempts: int = 0
    fallback_path: str | None = None  # "a:529 > b:200" when more than one provider was tried
    policy_violation: str | None = None  # the rule that refused or cut this request
    cost_micros: int | None = None  # None: usage without a known price
    budget_micros: int = 0  # what budgets count (a fallback price when unpriced)
    request_class: str | None = None  # x-claude-code-request-class (main, subagent, ...)
    agent_id: str | None = None  # x-claude-code-agent-id
    parent_agent_id: str | None = None  # x-claude-code-parent-agent-id
    ingress: str = "anthropic"  # the door it came in by: anthropic | bedrock | vertex | openai

    # --- for observers -----------------------------------------------------------------
    provider_kind: str | None = None  # anthropic | bedrock | vertex | openai
    key_prefix: str | None = None  # the key's display prefix (never the key)
    # The model was declared (a provider's list, an alias, a key's alias): a metrics label.
    model_declared: bool = False
    usage_seen: bool = False  # the upstream reported usage
    # The error the gateway answered with (error_code without a stream's error event).
    response_error_code: str | None = None
    budget_warnings: tuple[str, ...] = ()  # "scope:pct" of budgets past their warning level
    rate_limit_dimension: str | None = None  # a rate-limit refusal: rpm | tpm | rpd | ...
    auth_failure_reason: str | None = None  # an invalid key: missing | malformed | ...

    @property
    def total_tokens(self) -> int:
        """Input (cached or not) plus output: what token rate limits count."""
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_creation_tokens
            + self.output_tokens
        )

    @property
    def budget_decision(self) -> str:
        """blocked | soft_warn | allowed (the span attribute ``langwatch.budget.decision``)."""
        if self.response_error_code == "budget_exceeded":
            return "blocked"
        return "soft_warn" if self.budget_warnings else "allowed"

    def ledger_values(self) -> tuple[object, ...]:
        """The ledger row's values, in ``LEDGER_COLUMNS`` order."""
        return LEDGER_VALUES(self)

    def ledger_row(self) -> dict[str, object]:
        """The ledger row as a mapping of column to value."""
        return dict(zip(LEDGER_COLUMNS, LEDGER_VALUES(self), strict=True))


# ``Settlement.ledger_values`` as a C callable, for the ledger writer's loop over a batch.
LEDGER_VALUES = attrgetter(*LEDGER_COLUMNS)
