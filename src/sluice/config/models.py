"""The server configuration file, as closed pydantic models (unknown keys are errors)."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sluice.config.providers import AnthropicProviderConfig, AnyProviderConfig, check_url

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's own limit; never a framework's 1 MB


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Closed):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    # Seconds between polls of the key table, so a disable/revoke/rotate made by another
    # process is seen within this bound (the issue asks for 5 s).
    key_refresh_seconds: float = Field(default=2.0, gt=0, le=5.0)
    # How often a gateway checks the config version on SQLite (or on PostgreSQL while its
    # LISTEN connection is down); key/budget commands wait for every gateway to apply it.
    config_poll_ms: int = Field(default=50, ge=5, le=5000)
    # How long a key/budget command waits for every live gateway to apply it; after that it
    # names the ones that did not and exits 3 (the change itself stays committed).
    config_ack_timeout_s: float = Field(default=5.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Access-log lines a second for requests with no valid key (401s; the rest are counted
    # in sluice_auth_failures_total, and none is stored in the ledger).
    unauthenticated_log_per_second: int = Field(default=10, ge=0)
    # Edge limits, enforced before auth by server/http_protocol.py (issue #11).
    # Request line + header section size; over it: 431 and the connection closes.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Header lines per request; over it: 431 and the connection closes.
    max_headers: int = Field(default=200, ge=8)
    # Seconds to receive a whole request head (from connect or its first byte).
    header_timeout_s: float = Field(default=10.0, gt=0)
    # Seconds without a byte while a request body is being read.
    body_idle_timeout_s: float = Field(default=30.0, gt=0)
    # A started stream that relayed nothing for this long gets an `event: ping` (Claude Code
    # aborts after 300 s of silence); 0 turns pings off. core/keepalive.py.
    keepalive_s: float = Field(default=15.0, ge=0)
    # Open connections per process; over it: 503 and close. None: no cap.
    max_connections: int | None = Field(default=None, ge=1)


class LedgerConfig(_Closed):
    batch_size: int = Field(default=200, ge=1)
    flush_interval_ms: int = Field(default=200, ge=1)
    max_queue: int = Field(default=100_000, ge=100)
    # Hold the end of each relayed response until its row is committed (group commit), so a
    # crash never loses a row already acknowledged to a client. Costs about one commit's
    # latency at the end of each response (not its first byte); false: rows wait up to
    # flush_interval_ms in memory and a kill -9 loses them.
    acknowledge_after_commit: bool = True
    # On SQLite, acknowledge once the row is in a local journal beside the database (one
    # small write, no commit wait: store/ledger_journal.py), as durable as the SQLite file
    # itself; replayed at the next start after a crash. false: wait for the commit. Not used
    # on PostgreSQL, where the shared database is what survives a replica.
    journal: bool = True
    journal_dir: str | None = None  # default: <database file>.ledger-journal/


class CircuitBreakerConfig(_Closed):
    """Per provider credential: ``failure_threshold`` failures within ``window_s`` open the
    circuit for ``cooldown_s``; then one probe request decides."""

    failure_threshold: int = Field(default=5, ge=1)
    window_s: float = Field(default=30.0, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0)


class MetricsConfig(_Closed):
    """Prometheus ``/metrics`` on its own port (0: any free port). With several workers,
    worker i serves on the first free port of port .. port + workers - 1."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    # Label series by virtual key id (sluice_key_requests_total, sluice_key_cost_usd_total).
    per_key_labels: bool = False


class AdminConfig(_Closed):
    """The admin plane (REST API under /api/v1) on a listener of its own, so the gateway can
    be exposed while admin stays internal. 0: any free port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=4001, ge=0, le=65535)


# Provider configs live in config/providers.py; ``ProviderConfig`` stays the Anthropic one.
ProviderConfig = AnthropicProviderConfig


class PriceOverride(_Closed):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float = Field(default=0.0, ge=0)
    cache_write_5m_per_mtok: float = Field(default=0.0, ge=0)
    cache_write_1h_per_mtok: float = Field(default=0.0, ge=0)


class PricingConfig(_Closed):
    overrides: dict[str, PriceOverride] = Field(default_factory=dict)
    # What an unpriced model counts against budgets (its ledger cost stays unknown).
    unknown_model_price: PriceOverride = PriceOverride(
        input_per_mtok=15,
        output_per_mtok=75,
        cache_read_per_mtok=1.5,
        cache_write_5m_per_mtok=18.75,
        cache_write_1h_per_mtok=30,
    )


class TracingProject(_Closed):
    """Send one project's traces to its own collector (its own LangWatch project)."""

    otlp_endpoint: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    _url = field_validator("otlp_endpoint")(check_url)


class TracingConfig(_Closed):
    """OpenTelemetry traces per turn (docs/tracing.md). Without ``otlp_endpoint`` the standard
    ``OTEL_EXPORTER_OTLP_*`` variables apply; with neither, spans go to the local store only."""

    # On by default: a fresh install keeps turns in its own store (the admin API's Messages
    # view, `sluice traces`); exporting over OTLP needs an endpoint, so it stays opt-in.
    enabled: bool = True
    otlp_endpoint: str | None = None  # the full traces URL, e.g. https://host/api/otel/v1/traces
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    capture_content: bool = False
    queue_size: int = Field(default=4096, ge=16)  # finished requests waiting to become spans
    queue_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)  # bodies they hold
    export_queue_size: int = Field(default=8192, ge=16)  # spans waiting per collector
    export_batch_size: int = Field(default=512, ge=1)
    export_timeout_s: float = Field(default=10.0, gt=0)
    # sdk: the OpenTelemetry SDK's exporter; fastotel (the `fastotel` extra): the same OTLP,
    # encoded and sent in Rust off the GIL, for about half the sink process's CPU.
    exporter: Literal["sdk", "fastotel"] = "sdk"
    flush_interval_ms: int = Field(default=200, ge=1)
    store: bool = True
    retention_days: float = Field(default=7.0, gt=0)
    projects: dict[str, TracingProject] = Field(default_factory=dict)

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("exporter")
    @classmethod
    def _exporter_installed(cls, value: str) -> str:
        if value == "fastotel" and importlib.util.find_spec("fastotel") is None:
            raise ValueError("fastotel is not installed: pip install 'sluice[fastotel]'")
        return value


Outcome = Literal["open", "closed"]

WORKERS_NEED_REDIS = (
    "several workers need redis: (budgets, rate limits and tool verdicts are counted per "
    "process, so each worker would keep its own); set redis: redis://host:6379/0, or run "
    "one worker"
)


class RedisOutageConfig(_Closed):
    """What each Redis-backed feature does while Redis is unreachable: ``closed`` refuses
    with 503 ``<feature>_unavailable``, ``open`` goes on without it (docs/security.md)."""

    # Block budgets cannot prove a request fits: refuse (warn budgets never refuse).
    budgets: Outcome = "closed"
    # Rate limits guard capacity, not money: serve uncounted rather than take keys down.
    rate_limits: Outcome = "open"
    # A lost verdict means a fresh judgment upstream (the key's policy still applies).
    verdicts: Outcome = "open"
    # Send a budget webhook that may repeat rather than lose it.
    webhook_dedupe: Outcome = "open"


class SecretsConfig(_Closed):
    """Where the key-encryption key (KEK) of stored provider credentials comes from:
    ``SLUICE_KEK`` (base64 of 32 bytes) wins; else this file (the same base64, or 32 raw
    bytes). Without either, projects cannot hold provider credentials."""

    kek_file: str | None = None


class SluiceConfig(_Closed):
    server: ServerConfig = ServerConfig()
    database: str = "sqlite:///./sluice.db"
    # Shared budget counters for several replicas (redis://host:6379/0); in-process when unset.
    redis: str | None = None
    redis_outage: RedisOutageConfig = RedisOutageConfig()
    secret_key: SecretStr | None = None
    # Signs budget webhooks (HMAC-SHA256 in x-sluice-signature); give receivers this value.
    webhook_secret: SecretStr | None = None
    providers: dict[str, AnyProviderConfig] = Field(default_factory=dict)
    ledger: LedgerConfig = LedgerConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    metrics: MetricsConfig = MetricsConfig()
    admin: AdminConfig = AdminConfig()
    pricing: PricingConfig = PricingConfig()
    # How long a budget reservation outlives a process that died before settling it.
    budget_reservation_ttl_s: float = Field(default=900.0, gt=0)
    tracing: TracingConfig = TracingConfig()
    secrets: SecretsConfig = SecretsConfig()
    # Starts the built-in fake upstream and routes to it when no provider is configured.
    demo: bool = False

    @model_validator(mode="after")
    def _workers_share_counters(self) -> SluiceConfig:
        if self.server.workers > 1 and not self.redis:
            raise ValueError(f"server.workers {self.server.workers}: {WORKERS_NEED_REDIS}")
        return self

    @field_validator("database")
    @classmethod
    def _db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+asyncpg:// URL")
        return value
