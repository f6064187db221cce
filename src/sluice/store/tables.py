"""SQLAlchemy Core tables. Timestamps are integer milliseconds since the epoch (UTC): one
representation that sorts, compares and windows the same on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("id", String(26), primary_key=True),  # the ULID inside the key itself
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("project", String(200), nullable=True),
    Column("principal", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Column("organization", String(200), nullable=True),
    Column("environment", String(8), nullable=False),  # live | test
    Column("display_prefix", String(18), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False),
    Column("previous_key_hash", String(64), nullable=True),
    Column("previous_valid_until", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # active | disabled | revoked
    Column("expires_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False, index=True),
    Column("last_used_at", BigInteger, nullable=True),
    Column("config", Text, nullable=False, server_default="{}"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("vk_id", String(26), nullable=True),
    Column("principal", String(200), nullable=True),
    Column("project", String(200), nullable=True),
    Column("team", String(200), nullable=True),
    Column("organization", String(200), nullable=True),
    Column("session_id", String(200), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("provider", String(100), nullable=True),
    Column("model_requested", String(200), nullable=True),
    Column("model_sent", String(200), nullable=True),
    Column("streaming", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("stop_reason", String(64), nullable=True),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_5m_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("upstream_request_id", String(200), nullable=True),
    Column("upstream_latency_ms", Integer, nullable=True),
    Column("ttft_ms", Integer, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("client_disconnected", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # "anthropic-primary:529 > bedrock:200" when more than one provider was tried.
    Column("fallback_path", Text, nullable=True),
    Column("policy_violation", Text, nullable=True),
    Column("cost_micros", BigInteger, nullable=True),  # null: no known price (never 0)
    Column("budget_micros", BigInteger, nullable=True),  # what budgets count (fallback price)
    # Claude Code's gateway hints: main, subagent, workflow, compaction or auxiliary; and
    # the agent (a subagent's id, with its parent's) that made the call.
    Column("request_class", String(32), nullable=True),
    Column("agent_id", String(200), nullable=True),
    Column("parent_agent_id", String(200), nullable=True),
    # The door the request came in by: anthropic | bedrock | vertex | openai.
    Column("ingress", String(16), nullable=False, server_default="anthropic"),
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("scope", String(20), nullable=False),  # organization|team|project|virtual_key|principal
    Column("target", String(200), nullable=False),
    Column("window", String(10), nullable=False),  # minute|hour|day|week|month|total
    Column("limit_micros", BigInteger, nullable=False),
    Column("on_breach", String(10), nullable=False),  # block | warn
    Column("webhook_url", Text, nullable=True),
    Column("webhook_format", String(10), nullable=False, server_default="json"),
    Column("reset_at", BigInteger, nullable=False, server_default="0"),  # spend before is ignored
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_budgets_scope_target", budgets.c.scope, budgets.c.target)

Index("ix_ledger_created_at", ledger.c.created_at)
Index("ix_ledger_vk_id", ledger.c.vk_id)

# One row per span (telemetry/spans.py); ids are lower-case hex. Re-emitted spans (a retried
# model call) overwrite their row. ``created_at`` (ms) drives retention.
trace_spans = Table(
    "trace_spans",
    metadata,
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16), nullable=True),
    Column("name", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("session_id", String(200), nullable=True),
    Column("vk_id", String(26), nullable=True),
    Column("project", String(200), nullable=True),
    Column("agent", String(200), nullable=True),
    Column("request_id", String(40), nullable=True),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=True),
    Column("error", String(200), nullable=True),
    Column("attributes", Text, nullable=False, server_default="{}"),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_trace_spans_created_at", trace_spans.c.created_at)
Index("ix_trace_spans_session_id", trace_spans.c.session_id)
Index("ix_trace_spans_vk_id", trace_spans.c.vk_id)

# One row (id 1): bumped in the same transaction as every key or budget change.
config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# One row per running gateway process: the config version it has applied, and when it last
# said so (database clock, ms).
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("applied_version", BigInteger, nullable=False),
)

# Admin API tokens: only an HMAC of the secret (server secret), like virtual keys.
admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", String(26), primary_key=True),  # the ULID inside the token itself
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # admin | viewer
    Column("project", String(200), nullable=True),  # set: sees only this project
    Column("token_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
)

# Every admin mutation: who, what, when, before and after (secrets redacted).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(26), primary_key=True),  # a ULID: sorts by time, the paging cursor
    Column("at", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("resource_id", String(64), nullable=True),
    Column("project", String(200), nullable=True),  # what a project-scoped token may see
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
)
Index("ix_audit_log_project", audit_log.c.project)

# A project's own credential for a provider id of the server config: the secret fields as
# one AES-GCM sealed JSON value (nonce || ciphertext+tag, the KEK's; store/sealing.py).
provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("provider_id", String(200), primary_key=True),
    Column("kind", String(32), nullable=False),  # api_key | aws_keys | bearer_token | …
    Column("sealed", LargeBinary, nullable=False),
    Column("last4", String(4), nullable=False),
    Column("set_at", BigInteger, nullable=False),
    Column("set_by", String(200), nullable=False),
)
