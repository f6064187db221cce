"""The gateway's long-lived parts, built once at start-up by small builder functions into a
frozen ``Services``, and torn down in reverse order of building (an ``AsyncExitStack``).

No module-level mutable state anywhere: handlers reach all of this through the app.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig
from sluice.core.exchange import Exchange
from sluice.core.fallback import FallbackSender
from sluice.core.resolve import ModelResolver
from sluice.core.router import Router
from sluice.core.steps.base import Steps
from sluice.core.steps.body import ReadBody
from sluice.core.steps.identify import DeclaredSize, Identify
from sluice.core.steps.limits import Budget, RateLimit
from sluice.core.steps.policy import Policy
from sluice.core.steps.route import Dispatch, Resolve
from sluice.governance.budgets import BudgetGate
from sluice.governance.config_sync import ConfigSync
from sluice.governance.key_cache import KeyCache
from sluice.governance.outage import Outcome
from sluice.governance.policy import PolicyBook
from sluice.governance.rate_limits import RateLimiter
from sluice.governance.webhooks import WebhookSender
from sluice.pricing import Pricing
from sluice.server.build_governance import Governance, build_governance
from sluice.server.build_parts import (
    Observability,
    Routing,
    Storage,
    build_observability,
    build_routing,
    build_storage,
)
from sluice.server.observer import RequestObserver
from sluice.store.ledger import LedgerWriter
from sluice.telemetry import Telemetry
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.metrics_server import MetricsServer


@dataclass(frozen=True, slots=True)
class Services:
    config: SluiceConfig
    clock: Clock
    started_at: float
    storage: Storage
    observability: Observability
    routing: Routing
    governance: Governance
    exchange: Exchange

    # Shortcuts for the handlers and tests.
    @property
    def engine(self) -> AsyncEngine:
        return self.storage.engine

    @property
    def keys(self) -> KeyCache:
        return self.storage.keys

    @property
    def ledger(self) -> LedgerWriter:
        return self.storage.ledger

    @property
    def router(self) -> Router:
        return self.routing.router

    @property
    def fallback(self) -> FallbackSender:
        return self.routing.fallback

    @property
    def resolver(self) -> ModelResolver:
        return self.routing.resolver

    @property
    def policies(self) -> PolicyBook:
        return self.governance.policies

    @property
    def budgets(self) -> BudgetGate:
        return self.governance.budgets

    @property
    def rate_limits(self) -> RateLimiter:
        return self.governance.rate_limits

    @property
    def webhooks(self) -> WebhookSender:
        return self.governance.webhooks

    @property
    def config_sync(self) -> ConfigSync:
        return self.governance.config_sync

    @property
    def metrics(self) -> Metrics:
        return self.observability.metrics

    @property
    def metrics_server(self) -> MetricsServer | None:
        return self.observability.metrics_server

    @property
    def telemetry(self) -> Telemetry:
        return self.observability.telemetry

    @property
    def pricing(self) -> Pricing:
        return self.routing.pricing

    @property
    def demo(self) -> bool:
        return self.routing.demo

    def circuits(self) -> dict[str, dict[str, object]]:
        return {pid: b.snapshot() for pid, b in self.fallback.breakers.items()}

    async def redis_ready(self) -> bool | None:
        """None when no Redis is configured."""
        return await self.governance.redis_ping()

    def degraded(self, redis_up: bool | None) -> dict[str, Outcome]:
        """Redis-backed features running on their outage outcome (governance/outage.py)."""
        return self.governance.outage.degraded(redis_up)

    async def db_ready(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True


def _steps(cfg: SluiceConfig, storage: Storage, routing: Routing, gov: Governance) -> Steps:
    """The request path, in order (docs/architecture.md)."""
    spawn = gov.background.spawn
    return Steps(
        [
            DeclaredSize(cfg.server.max_body_bytes),
            Identify(storage.keys),
            ReadBody(cfg.server.max_body_bytes),
            RateLimit(gov.rate_limits, spawn),
            Policy(gov.policies, gov.verdicts, spawn),
            Resolve(routing.resolver, routing.router),
            Budget(gov.budgets, spawn),
            Dispatch(routing.router, routing.fallback),
        ]
    )


async def build_services(
    cfg: SluiceConfig, clock: Clock, stack: contextlib.AsyncExitStack
) -> Services:
    storage = await build_storage(cfg, clock, stack)
    observability = await build_observability(cfg, storage, stack)
    routing = await build_routing(cfg, observability.metrics, stack)
    governance = await build_governance(cfg, clock, storage, routing, stack)
    observer = RequestObserver(
        observability.metrics, observability.telemetry, observability.unkeyed_log
    )
    exchange = Exchange(
        _steps(cfg, storage, routing, governance),
        storage.ledger,
        routing.pricing,
        observer,
        durable=cfg.ledger.acknowledge_after_commit,
        keepalive_s=cfg.server.keepalive_s or None,
    )
    return Services(cfg, clock, time.time(), storage, observability, routing, governance, exchange)
