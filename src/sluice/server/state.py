"""The app's container: everything long-lived, built in lifespan and torn down in order.

No module-level mutable state anywhere: handlers reach all of this through the app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.clock import Clock, SystemClock
from sluice.config.models import ProviderConfig, SluiceConfig
from sluice.config.providers import AnyProviderConfig
from sluice.core.breaker import CircuitBreaker
from sluice.core.fallback import FallbackSender
from sluice.core.pipeline import Pipeline
from sluice.core.resolve import ModelResolver
from sluice.core.router import Router
from sluice.governance.budgets import BudgetGate
from sluice.governance.config_sync import ConfigSync
from sluice.governance.counters import BudgetCounters, MemoryCounters
from sluice.governance.key_cache import KeyCache
from sluice.governance.outage import Outage, Outcome
from sluice.governance.policy import PolicyBook
from sluice.governance.rate_limits import RateLimiter
from sluice.governance.verdicts import RedisVerdicts, VerdictCache, Verdicts
from sluice.governance.webhooks import WebhookSender
from sluice.pricing import Pricing
from sluice.providers.base import Provider
from sluice.providers.factory import build_provider
from sluice.store.budgets_repo import BudgetsRepo
from sluice.store.db import create_engine, migrate
from sluice.store.keys_repo import KeysRepo
from sluice.store.ledger import LedgerWriter
from sluice.store.redis_counters import RedisCounters, RedisRateStore
from sluice.store.settings_repo import resolve_secret
from sluice.telemetry import Telemetry
from sluice.telemetry.access_log import LogSampler
from sluice.telemetry.labels import ModelLabels, configured_models
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.metrics_server import MetricsServer
from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.scenarios import Reply, Scenario, TextBlock

log = logging.getLogger("sluice")

DEMO_TEXT = (
    "Hello from Sluice's DEMO upstream. This reply is canned, not from a real model: "
    "no provider key is configured. Set ANTHROPIC_API_KEY (or add a provider to sluice.yaml) "
    "and restart to relay to Anthropic."
)


def effective_providers(config: SluiceConfig) -> dict[str, AnyProviderConfig]:
    """Configured providers; else ANTHROPIC_API_KEY from the environment; else none (demo)."""
    if config.providers:
        return dict(config.providers)
    api_key = os.environ.get("ANTHROPIC_API_KEY")
    if api_key and not config.demo:
        primary = ProviderConfig.model_validate({"type": "anthropic", "api_key": api_key})
        return {"anthropic-primary": primary}
    return {}


@dataclass
class AppState:
    config: SluiceConfig
    clock: Clock = field(default_factory=SystemClock)
    engine: AsyncEngine | None = None
    keys: KeyCache | None = None
    config_sync: ConfigSync | None = None
    ledger: LedgerWriter | None = None
    router: Router = field(default_factory=lambda: Router({}))
    fallback: FallbackSender = field(default_factory=lambda: FallbackSender({}))
    pipeline: Pipeline = field(init=False)
    pricing: Pricing = field(init=False)
    budgets: BudgetGate = field(init=False)
    outage: Outage = field(init=False)
    rate_limits: RateLimiter = field(init=False)
    webhooks: WebhookSender = field(init=False)
    session: aiohttp.ClientSession | None = None
    demo: FakeAnthropic | None = None
    metrics: Metrics = field(init=False)
    metrics_server: MetricsServer | None = None
    telemetry: Telemetry = field(init=False)
    unkeyed_log: LogSampler = field(init=False)  # access lines of requests with no key
    started_at: float = field(default_factory=time.time)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, kept referenced, and awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        cfg = self.config
        self.pricing = Pricing(cfg.pricing)
        self.engine = create_engine(cfg.database)
        await migrate(self.engine)
        secret = await resolve_secret(cfg, self.engine)
        repo = KeysRepo(self.engine)
        self.keys = KeyCache(repo, secret, self.clock, cfg.server.key_refresh_seconds)
        self.keys.start()
        self.ledger = LedgerWriter(
            self.engine,
            batch_size=cfg.ledger.batch_size,
            flush_interval_ms=cfg.ledger.flush_interval_ms,
            max_queue=cfg.ledger.max_queue,
        )
        self.ledger.start()
        # --- metrics ---
        self.metrics = Metrics(per_key=cfg.metrics.per_key_labels)
        self.unkeyed_log = LogSampler(cfg.server.unauthenticated_log_per_second)
        self.metrics.watch_ledger(self.ledger)
        if cfg.metrics.enabled:
            self.metrics_server = MetricsServer(self.metrics, cfg.metrics, cfg.server.workers)
            await self.metrics_server.start()
        # --- end metrics ---
        self.telemetry = Telemetry(cfg.tracing, self.engine, database_url=cfg.database)
        self.telemetry.start()
        self.metrics.watch_export(self.telemetry.stats)
        # One pooled client session per process; no total timeout (streams run long).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
            auto_decompress=True,
        )
        providers_cfg = effective_providers(cfg)
        if not providers_cfg:
            self.demo = FakeAnthropic(
                Scenario(Reply([TextBlock(DEMO_TEXT, chunks=6)])), max_recorded=100
            )
            await self.demo.start()
            providers_cfg = {
                "demo": ProviderConfig(
                    type="anthropic",
                    base_url=self.demo.url,
                    models=["claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001"],
                )
            }
            log.warning(
                "DEMO MODE: no provider key configured; replies come from a canned "
                "fake upstream at %s, not a real model",
                self.demo.url,
            )
        providers: dict[str, Provider] = {}
        for provider_id, pcfg in providers_cfg.items():
            providers[provider_id] = build_provider(provider_id, pcfg, self.session)
            self.pricing.warm(pcfg.type, pcfg.models or [])
        self.router = Router(providers)
        known = configured_models(providers_cfg) | self.pricing.known_models()
        self.metrics.models = ModelLabels(known)  # metrics: bounded model labels
        breakers = {
            pid: CircuitBreaker(pid, cfg.circuit_breaker, time.monotonic, self._circuit_changed)
            for pid in providers
        }
        for pid in providers:
            self.metrics.circuit(pid, "closed")
        self.fallback = FallbackSender(breakers, self._fell_back)
        counters: BudgetCounters = (
            RedisCounters.from_url(cfg.redis) if cfg.redis else MemoryCounters()
        )
        self.outage = Outage(cfg.redis_outage)
        verdicts: Verdicts = (
            RedisVerdicts(counters.client, outage=self.outage)
            if isinstance(counters, RedisCounters)
            else VerdictCache(self.clock)
        )
        self.pipeline = Pipeline(ModelResolver(self.router), PolicyBook(), verdicts)
        signing = cfg.webhook_secret.get_secret_value().encode() if cfg.webhook_secret else secret
        self.webhooks = WebhookSender(self.session, signing)
        self.budgets = BudgetGate(
            BudgetsRepo(self.engine),
            self.pricing,
            self.clock,
            self.webhooks,
            cfg.server.key_refresh_seconds,
            counters,
            cfg.budget_reservation_ttl_s,
            self.outage,
        )
        await self.budgets.start()
        self.config_sync = ConfigSync(
            self.engine, [self.keys.reload, self.budgets.refresh], cfg.server.config_poll_ms / 1000
        )
        await self.config_sync.start()
        self.rate_limits = RateLimiter(
            self.clock,
            RedisRateStore(counters) if isinstance(counters, RedisCounters) else None,
            self.outage,
        )

    async def stop(self) -> None:
        if self.config_sync is not None:
            await self.config_sync.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.keys is not None:
            await self.keys.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if hasattr(self, "budgets"):
            await self.budgets.stop()
            await self.budgets.counters.close()
            await self.webhooks.drain()
        if self.ledger is not None:
            await self.ledger.stop()
        if hasattr(self, "telemetry"):
            await self.telemetry.stop()
        for provider in self.router.providers.values():
            await provider.close()
        if self.session is not None:
            await self.session.close()
        if self.demo is not None:
            await self.demo.stop()
        if self.engine is not None:
            await self.engine.dispose()

    def _circuit_changed(self, provider_id: str, state: str) -> None:
        log.warning("circuit for provider %s is now %s", provider_id, state)
        self.metrics.circuit(provider_id, state)

    def _fell_back(self, from_id: str, to_id: str, trigger: str) -> None:
        log.warning("fallback from %s to %s (%s)", from_id, to_id, trigger)
        self.metrics.fallback(from_id, to_id, trigger)

    def circuits(self) -> dict[str, dict[str, object]]:
        return {pid: b.snapshot() for pid, b in self.fallback.breakers.items()}

    async def redis_ready(self) -> bool | None:
        """None when no Redis is configured."""
        counters = self.budgets.counters if hasattr(self, "budgets") else None
        return await counters.ping() if isinstance(counters, RedisCounters) else None

    def degraded(self, redis_up: bool | None) -> dict[str, Outcome]:
        """Redis-backed features running on their outage outcome (see governance/outage.py)."""
        return self.outage.degraded(redis_up) if hasattr(self, "outage") else {}

    async def db_ready(self) -> bool:
        if self.engine is None:
            return False
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True
