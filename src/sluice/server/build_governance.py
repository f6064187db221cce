"""Governance's builder: the counters (in-process, or Redis shared by every replica), the
budget gate, rate limits, remembered tool verdicts, webhooks, and the config sync that makes
a key or budget change apply at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from sluice.backends.factory import Backend, build_backend
from sluice.base.clock import Clock
from sluice.config.models import SluiceConfig
from sluice.governance.budgets import BudgetGate
from sluice.governance.config_sync import ConfigSync, Reload
from sluice.governance.outage import Outage
from sluice.governance.policy import PolicyBook
from sluice.governance.rate_limits import RateLimiter
from sluice.governance.verdicts import Verdicts
from sluice.governance.webhooks import WebhookSender
from sluice.server.build_parts import Routing, Storage, effective_providers, on_stop
from sluice.server.project_providers import ProjectProviders
from sluice.store.budgets_repo import BudgetsRepo


class Background:
    """Work spawned off the response path (remote settles, verdicts), kept referenced and
    awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Governance:
    outage: Outage
    backend: Backend
    policies: PolicyBook
    verdicts: Verdicts
    budgets: BudgetGate
    rate_limits: RateLimiter
    webhooks: WebhookSender
    config_sync: ConfigSync
    background: Background

    async def redis_ping(self) -> bool | None:
        """None when no Redis is configured."""
        return await self.backend.ping()


async def build_governance(
    cfg: SluiceConfig,
    clock: Clock,
    storage: Storage,
    routing: Routing,
    stack: contextlib.AsyncExitStack,
) -> Governance:
    backend = build_backend(cfg, clock)
    on_stop(stack, backend.close)
    outage = Outage(cfg.redis_outage)
    verdicts = Verdicts(backend.verdicts, outage)
    signing = (
        cfg.webhook_secret.get_secret_value().encode() if cfg.webhook_secret else storage.secret
    )
    webhooks = WebhookSender(routing.session, signing)
    on_stop(stack, webhooks.drain)
    budgets = BudgetGate(
        BudgetsRepo(storage.engine),
        routing.pricing,
        clock,
        webhooks,
        backend.counters,
        cfg.server.key_refresh_seconds,
        cfg.budget_reservation_ttl_s,
        outage,
    )
    await budgets.start()
    on_stop(stack, budgets.stop)
    background = Background()
    on_stop(stack, background.drain)
    projects = ProjectProviders(
        cfg, storage.engine, routing.router, routing.session, effective_providers(cfg)
    )
    await projects.start()  # KekError: credentials stored that no KEK here opens
    on_stop(stack, projects.stop)
    reloaders: list[Reload] = [storage.keys.reload, budgets.refresh, projects.reload]
    sync = ConfigSync(storage.engine, reloaders, cfg.server.config_poll_ms / 1000)
    await sync.start()
    on_stop(stack, sync.stop)
    rate_limits = RateLimiter(clock, backend.rates, outage)
    return Governance(
        outage, backend, PolicyBook(), verdicts, budgets, rate_limits, webhooks, sync, background
    )
