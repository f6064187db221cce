"""Prometheus metrics: one ``Metrics`` per process, with its own registry (never the global one).

Metrics observe the request path's ``Settlement``: ``observe`` once per request, when it
settles (refusals included), and ``active_stream`` around a relayed stream. Label children are
bound once per label tuple and kept in plain dicts, so a request costs a few dict lookups and
counter increments.
Queue depths and drops are read from their owners at scrape time, never pushed.

Every label value comes from a bounded set (telemetry/labels.py): configured provider ids,
known models (else ``other``), fixed codes. Per-key labels exist only when opted in
(``metrics.per_key_labels``): keys are admin-made, but there may be many.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sluice.base.asgi import Send
from sluice.base.settlement import Settlement
from sluice.errors import GatewayError
from sluice.telemetry.labels import (
    AUTH_REASONS,
    FALLBACK_REASONS,
    RATE_DIMENSIONS,
    ModelLabels,
    bounded,
    status_label,
)
from sluice.telemetry.tally import CounterTable, HistogramTable

log = logging.getLogger("sluice.metrics")

# Seconds. LLM calls answer headers in ~0.3-3 s and first tokens later; long thinking or
# queueing upstream can take minutes, so the top buckets reach two.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
BUDGET_CODES = frozenset({"budget_exceeded", "budget_unavailable"})
POLICY_CODES = frozenset({"tool_not_allowed", "url_not_allowed", "model_not_allowed"})
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class LedgerQueue(Protocol):
    @property
    def pending(self) -> int: ...

    @property
    def dropped(self) -> int: ...


class _ModelChildren(NamedTuple):
    """Rows bound for one (provider, model); built once, then reused by every request."""

    tokens: tuple[list[float], list[float], list[float], list[float]]  # TOKEN_KINDS order
    cost: list[float]
    unpriced: list[float]
    upstream_latency: list[float]
    ttft: list[float]


class _QueueCollector(Collector):
    """Ledger and export queues, read when scraped."""

    def __init__(self) -> None:
        self.ledger: LedgerQueue | None = None
        self.export: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.ledger is not None:
            yield GaugeMetricFamily(
                "sluice_ledger_queue_depth",
                "Ledger rows waiting to be written.",
                value=self.ledger.pending,
            )
            yield CounterMetricFamily(
                "sluice_ledger_dropped",
                "Ledger rows dropped because the queue was full.",
                value=self.ledger.dropped,
            )
        if self.export is not None:
            try:
                stats = self.export()
            except Exception:  # a broken callback must not break the whole scrape
                log.exception("export stats callback failed")
                return
            yield GaugeMetricFamily(
                "sluice_export_queue_depth",
                "Spans waiting to be exported.",
                value=stats.get("queue_depth", 0),
            )
            yield CounterMetricFamily(
                "sluice_export_dropped",
                "Spans dropped because the export queue was full.",
                value=stats.get("dropped", 0),
            )
            yield CounterMetricFamily(
                "sluice_export_exported", "Spans exported.", value=stats.get("exported", 0)
            )

    def describe(self) -> Iterable[Metric]:
        return []  # names depend on what is watched; skip the registry's duplicate check


class Metrics:
    def __init__(self, models: ModelLabels | None = None, *, per_key: bool = False) -> None:
        self.models = models if models is not None else ModelLabels()
        self.registry = CollectorRegistry()
        self._request_metrics(self.registry)
        self._governance_metrics(self.registry)
        self._router_metrics(self.registry)
        self._key_requests: Counter | None = None
        self._key_cost: Counter | None = None
        if per_key:
            self._per_key_metrics(self.registry)
        self._active_streams = Gauge(
            "sluice_active_streams", "Streamed responses being relayed now.", registry=self.registry
        )
        self._not_streaming = nullcontext()
        self._queues = _QueueCollector()
        self.registry.register(self._queues)
        self._by_request: dict[tuple[str, int, str, str, str], list[float]] = {}
        self._by_model: dict[tuple[str, str], _ModelChildren] = {}

    def _request_metrics(self, reg: CollectorRegistry) -> None:
        """Every request adds to these: plain rows (telemetry/tally.py), not locked children."""
        by_model = ("provider", "model")
        self._requests = CounterTable(
            "sluice_requests",
            "Requests by route, HTTP status, provider, model and door (ingress).",
            ("route", "status", "provider", "model", "ingress"),
        )
        self._upstream_latency = HistogramTable(
            "sluice_upstream_latency_seconds",
            "Time from request start to the upstream's response headers.",
            by_model,
            LATENCY_BUCKETS,
        )
        self._ttft = HistogramTable(
            "sluice_ttft_seconds",
            "Time from request start to the first content token.",
            by_model,
            LATENCY_BUCKETS,
        )
        self._tokens = CounterTable(
            "sluice_tokens",
            "Tokens by kind: input (uncached), output, cache_read, cache_write.",
            (*by_model, "kind"),
        )
        self._cost = CounterTable("sluice_cost_usd", "Priced cost in USD.", by_model)
        self._unpriced = CounterTable(
            "sluice_unpriced_requests",
            "Requests with usage but no known price (their cost is not in sluice_cost_usd).",
            by_model,
        )
        tables = (self._requests, self._upstream_latency, self._ttft, self._tokens, self._cost)
        for table in (*tables, self._unpriced):
            reg.register(table)

    def _governance_metrics(self, reg: CollectorRegistry) -> None:
        self._budget_blocks = Counter(
            "sluice_budget_blocks", "Requests refused by budgets.", ["code"], registry=reg
        )
        self._policy_blocks = Counter(
            "sluice_policy_blocks", "Requests refused or cut by policy.", ["code"], registry=reg
        )
        self._rate_limited = Counter(
            "sluice_rate_limit_denials",
            "Requests refused by per-key rate limits.",
            ["dimension"],
            registry=reg,
        )
        self._auth_failures = Counter(
            "sluice_auth_failures",
            "Requests refused with 401 (no ledger row): missing, malformed, unknown, mismatch.",
            ["reason"],
            registry=reg,
        )

    def _router_metrics(self, reg: CollectorRegistry) -> None:
        self._fallbacks = Counter(
            "sluice_fallbacks",
            "Switches to the next provider in a fallback chain.",
            ["from_provider", "to_provider", "reason"],
            registry=reg,
        )
        self._circuit = Gauge(
            "sluice_circuit_state",
            "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=reg,
        )

    def _per_key_metrics(self, reg: CollectorRegistry) -> None:
        self._key_requests = Counter(
            "sluice_key_requests",
            "Requests by virtual key id and HTTP status (metrics.per_key_labels).",
            ["vk_id", "status"],
            registry=reg,
        )
        self._key_cost = Counter(
            "sluice_key_cost_usd",
            "Priced cost in USD by virtual key id (metrics.per_key_labels).",
            ["vk_id"],
            registry=reg,
        )

    # --- the request path -------------------------------------------------------------

    def observe(self, settled: Settlement) -> None:
        """Record one finished request from its settlement."""
        provider = settled.provider or ""
        # Only a known model is a label (else "other"), and only once routed.
        model = self.models.model(settled)
        # ingress: four fixed values (anthropic, bedrock, vertex, openai), set by the route.
        key = (settled.endpoint, settled.status, provider, model, settled.ingress)
        row = self._by_request.get(key)
        if row is None:
            status = status_label(settled.status)
            row = self._requests.row(settled.endpoint, status, provider, model, settled.ingress)
            self._by_request[key] = row
        row[0] += 1
        if self._key_requests is not None and settled.vk_id is not None:
            self._per_key(settled.vk_id, settled.status, settled.cost_micros)
        self._blocks(settled)
        if provider:
            bound = self._by_model.get((provider, model))
            if bound is None:
                bound = self._bind(provider, model)
            self._upstream(bound, settled)

    def _blocks(self, settled: Settlement) -> None:
        """Refusals: budgets and policy by their code, rate limits by their dimension, invalid
        keys by their reason (an attribute the client never sees)."""
        code = settled.response_error_code
        if code is not None:
            if code in BUDGET_CODES:
                self._budget_blocks.labels(code).inc()
            elif code in POLICY_CODES:
                self._policy_blocks.labels(code).inc()
        if settled.rate_limit_dimension is not None:
            self._rate_limit_denied(settled.rate_limit_dimension)
        elif settled.auth_failure_reason is not None:
            self._auth_failed(settled.auth_failure_reason)

    def _upstream(self, bound: _ModelChildren, settled: Settlement) -> None:
        """Latencies, tokens and cost of a routed request."""
        if (latency := settled.upstream_latency_ms) is not None:
            self._upstream_latency.observe(bound.upstream_latency, latency / 1000)
        if (ttft := settled.ttft_ms) is not None:
            self._ttft.observe(bound.ttft, ttft / 1000)
        if not settled.usage_seen:
            return
        tokens = bound.tokens
        tokens[0][0] += settled.input_tokens
        tokens[1][0] += settled.output_tokens
        tokens[2][0] += settled.cache_read_tokens
        tokens[3][0] += settled.cache_creation_tokens
        cost = settled.cost_micros
        if cost is None:
            bound.unpriced[0] += 1
        else:
            bound.cost[0] += cost / 1_000_000

    def refused(self, err: GatewayError) -> None:
        """A refusal on a route without a settlement (/v1/models): rate limits carry their
        dimension here, and an invalid key its reason (an attribute the client never sees)."""
        if err.code == "rate_limited":
            self._rate_limit_denied(str(err.meta.get("dimension", "")))
        elif err.code == "invalid_api_key":
            self._auth_failed(str(getattr(err, "reason", "")))

    def _rate_limit_denied(self, dimension: str) -> None:
        self._rate_limited.labels(bounded(dimension, RATE_DIMENSIONS)).inc()

    def _auth_failed(self, reason: str) -> None:
        self._auth_failures.labels(bounded(reason, AUTH_REASONS)).inc()

    def _per_key(self, vk_id: str, status: int, cost_micros: int | None) -> None:
        assert self._key_requests is not None and self._key_cost is not None
        self._key_requests.labels(vk_id, status_label(status)).inc()
        if cost_micros:
            self._key_cost.labels(vk_id).inc(cost_micros / 1_000_000)

    def active_stream(self, streaming: bool) -> AbstractContextManager[None]:
        """Counts a relayed stream for as long as it runs, however it ends. A response that is
        not a stream gets the shared no-op (no generator per request)."""
        return self._counting_stream() if streaming else self._not_streaming

    @contextmanager
    def _counting_stream(self) -> Iterator[None]:
        self._active_streams.inc()
        try:
            yield
        finally:
            self._active_streams.dec()

    def counting_send(self, route: str, send: Send) -> Send:
        """Wrap ``send`` so the response status is counted (routes without a ledger row)."""

        async def counted(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = status_label(message["status"])
                self._requests.row(route, status, "", "", "anthropic")[0] += 1
            await send(message)

        return counted

    # --- the router (fallback chain, circuit breakers) ---------------------------------

    def fallback(self, from_id: str, to_id: str, reason: str) -> None:
        self._fallbacks.labels(from_id, to_id, bounded(reason, FALLBACK_REASONS)).inc()

    def circuit(self, provider_id: str, state: str) -> None:
        """``state``: closed, half_open (or half-open), open."""
        self._circuit.labels(provider_id).set(CIRCUIT_STATES[state])

    # --- queues, read at scrape time ----------------------------------------------------

    def watch_ledger(self, ledger: LedgerQueue) -> None:
        self._queues.ledger = ledger

    def watch_export(self, stats: Callable[[], dict[str, int]]) -> None:
        """``stats()`` returns queue_depth, dropped and exported (the tracing exporter's)."""
        self._queues.export = stats

    def _bind(self, provider: str, model: str) -> _ModelChildren:
        tokens = self._tokens
        bound = _ModelChildren(
            tokens=(
                tokens.row(provider, model, "input"),
                tokens.row(provider, model, "output"),
                tokens.row(provider, model, "cache_read"),
                tokens.row(provider, model, "cache_write"),
            ),
            cost=self._cost.row(provider, model),
            unpriced=self._unpriced.row(provider, model),
            upstream_latency=self._upstream_latency.row(provider, model),
            ttft=self._ttft.row(provider, model),
        )
        self._by_model[(provider, model)] = bound
        return bound
