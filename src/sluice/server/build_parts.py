"""The builders behind ``Services``: storage, observability, routing, governance. Each
starts what it builds and registers its teardown on the exit stack, so shutdown runs in
reverse order of building."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.base.clock import Clock
from sluice.config.models import ProviderConfig, SluiceConfig
from sluice.config.providers import AnyProviderConfig
from sluice.core.breaker import CircuitBreaker
from sluice.core.fallback import FallbackSender
from sluice.core.resolve import ModelResolver
from sluice.core.router import Router
from sluice.governance.key_cache import KeyCache
from sluice.pricing import Pricing
from sluice.providers.base import Provider
from sluice.providers.demo import DEMO_MODELS, DemoProvider
from sluice.providers.factory import build_provider
from sluice.store.db import create_engine, migrate
from sluice.store.keys_repo import KeysRepo
from sluice.store.ledger import LedgerWriter
from sluice.store.ledger_journal import LedgerJournal
from sluice.store.settings_repo import resolve_secret
from sluice.telemetry import Telemetry
from sluice.telemetry.access_log import LogSampler
from sluice.telemetry.labels import ModelLabels, configured_models
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.metrics_server import MetricsServer

log = logging.getLogger("sluice")


def effective_providers(config: SluiceConfig) -> dict[str, AnyProviderConfig]:
    """Configured providers; else ANTHROPIC_API_KEY from the environment; else none (demo)."""
    if config.providers:
        return dict(config.providers)
    api_key = os.environ.get("ANTHROPIC_API_KEY")
    if api_key and not config.demo:
        primary = ProviderConfig.model_validate({"type": "anthropic", "api_key": api_key})
        return {"anthropic-primary": primary}
    return {}


def on_stop(stack: contextlib.AsyncExitStack, stop: Callable[[], Awaitable[object]]) -> None:
    async def run() -> None:
        await stop()

    stack.push_async_callback(run)


@dataclass(frozen=True, slots=True)
class Storage:
    engine: AsyncEngine
    secret: bytes
    keys: KeyCache
    ledger: LedgerWriter


async def build_storage(
    cfg: SluiceConfig, clock: Clock, stack: contextlib.AsyncExitStack
) -> Storage:
    engine = create_engine(cfg.database)
    on_stop(stack, engine.dispose)
    await migrate(engine)
    secret = await resolve_secret(cfg, engine)
    keys = KeyCache(KeysRepo(engine), secret, clock, cfg.server.key_refresh_seconds)
    keys.start()
    on_stop(stack, keys.stop)
    ledger = LedgerWriter(
        engine,
        batch_size=cfg.ledger.batch_size,
        flush_interval_ms=cfg.ledger.flush_interval_ms,
        max_queue=cfg.ledger.max_queue,
        journal=_ledger_journal(cfg, engine),
    )
    await ledger.recover()  # rows a killed process acknowledged but never committed
    ledger.start()
    on_stop(stack, ledger.stop)
    return Storage(engine, secret, keys, ledger)


def _ledger_journal(cfg: SluiceConfig, engine: AsyncEngine) -> LedgerJournal | None:
    """The durable acknowledgement's journal: SQLite files only (see ``ledger.journal``)."""
    database = engine.url.database
    if not (cfg.ledger.acknowledge_after_commit and cfg.ledger.journal):
        return None
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    where = cfg.ledger.journal_dir or f"{database}.ledger-journal"
    return LedgerJournal(Path(where))


@dataclass(frozen=True, slots=True)
class Observability:
    metrics: Metrics
    metrics_server: MetricsServer | None  # None: metrics.enabled is off
    telemetry: Telemetry
    unkeyed_log: LogSampler  # access lines of requests with no key


async def build_observability(
    cfg: SluiceConfig, storage: Storage, stack: contextlib.AsyncExitStack
) -> Observability:
    metrics = Metrics(per_key=cfg.metrics.per_key_labels)
    metrics.watch_ledger(storage.ledger)
    server = None
    if cfg.metrics.enabled:
        server = MetricsServer(metrics, cfg.metrics, cfg.server.workers)
        await server.start()
        on_stop(stack, server.stop)
    telemetry = Telemetry(cfg.tracing, storage.engine, database_url=cfg.database)
    telemetry.start()
    on_stop(stack, telemetry.stop)
    metrics.watch_export(telemetry.stats)
    unkeyed = LogSampler(cfg.server.unauthenticated_log_per_second)
    return Observability(metrics, server, telemetry, unkeyed)


@dataclass(frozen=True, slots=True)
class Routing:
    session: aiohttp.ClientSession
    pricing: Pricing
    router: Router
    fallback: FallbackSender
    resolver: ModelResolver
    demo: bool


def _breakers(
    cfg: SluiceConfig, providers: dict[str, Provider], metrics: Metrics
) -> dict[str, CircuitBreaker]:
    def changed(provider_id: str, state: str) -> None:
        log.warning("circuit for provider %s is now %s", provider_id, state)
        metrics.circuit(provider_id, state)

    for pid in providers:
        metrics.circuit(pid, "closed")
    return {
        pid: CircuitBreaker(pid, cfg.circuit_breaker, time.monotonic, changed) for pid in providers
    }


async def build_routing(
    cfg: SluiceConfig, metrics: Metrics, stack: contextlib.AsyncExitStack
) -> Routing:
    # One pooled client session per process; no total timeout (streams run long). No cookie
    # jar: the session serves every key, so a cookie one upstream answer set would go out with
    # every later request, whoever sent it.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    on_stop(stack, session.close)
    providers_cfg = effective_providers(cfg)
    pricing = Pricing(cfg.pricing)
    providers: dict[str, Provider] = {}
    demo = not providers_cfg
    if demo:
        providers["demo"] = DemoProvider("demo")
        pricing.warm("anthropic", list(DEMO_MODELS))
        log.warning(
            "DEMO MODE: no provider key configured; replies come from a canned "
            "in-process demo upstream, not a real model"
        )
    for provider_id, pcfg in providers_cfg.items():
        providers[provider_id] = provider = build_provider(provider_id, pcfg, session)
        on_stop(stack, provider.close)
        pricing.warm(pcfg.type, pcfg.models or [])
    known = configured_models(providers_cfg) | pricing.known_models()
    if demo:
        known |= set(DEMO_MODELS)
    metrics.models = ModelLabels(known)  # bounded model labels

    def fell_back(from_id: str, to_id: str, trigger: str) -> None:
        log.warning("fallback from %s to %s (%s)", from_id, to_id, trigger)
        metrics.fallback(from_id, to_id, trigger)

    router = Router(providers)
    fallback = FallbackSender(_breakers(cfg, providers, metrics), fell_back)
    return Routing(session, pricing, router, fallback, ModelResolver(router), demo)
