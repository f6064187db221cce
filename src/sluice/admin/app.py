"""The admin app: FastAPI under ``/api/v1``, OpenAPI at ``/api/v1/openapi.json``.

FastAPI fits here and not on the inference path: the admin plane is low-traffic JSON CRUD
where validation, dependencies and a published OpenAPI document are worth the framework.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from sluice import __version__
from sluice.admin import (
    budgets_routes,
    errors,
    keys_routes,
    ledger_routes,
    providers_routes,
    turns_routes,
)
from sluice.admin.console import routes as console
from sluice.admin.state import AdminState, CircuitsSource, CountersSource, no_circuits
from sluice.base.clock import Clock, SystemClock
from sluice.config.models import SluiceConfig
from sluice.governance.admin_tokens import TokenAdmin
from sluice.store.admin_tokens_repo import AdminTokensRepo
from sluice.store.db import create_engine
from sluice.store.sealing import load_kek
from sluice.store.settings_repo import resolve_secret

PREFIX = "/api/v1"


def _no_counters() -> None:
    return None


def create_admin_app(
    config: SluiceConfig,
    clock: Clock | None = None,
    counters: CountersSource | None = None,
    circuits: CircuitsSource | None = None,
    gateway_url: Callable[[], str] | None = None,
) -> FastAPI:
    """``circuits`` and ``gateway_url``: the console's breaker states and the gateway URL its
    export lines name, when the gateway runs in this process."""
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(config.database)
        try:
            # No migration here: `serve` migrates once before either listener starts (two
            # Alembic runs in one process at once collide on its module-level proxies).
            secret = await resolve_secret(config, engine)
            app.state.admin = AdminState(
                engine=engine,
                secret=secret,
                clock=clock,
                tokens=TokenAdmin(AdminTokensRepo(engine), secret, clock),
                ack_timeout_s=config.server.config_ack_timeout_s,
                counters=counters or _no_counters,
                providers=dict(config.providers),
                kek=load_kek(config.secrets.kek_file),  # KekError: a bad SLUICE_KEK or file
                circuits=circuits or no_circuits,
            )
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Sluice admin API",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; deployments are often air-gapped
        redoc_url=None,
    )
    errors.install(app)
    api = APIRouter(prefix=PREFIX)
    for module in (
        keys_routes,
        budgets_routes,
        ledger_routes,
        turns_routes,
        providers_routes,
    ):
        api.include_router(module.router)
    app.include_router(api)
    console.install(app, config, circuits, gateway_url)  # the web console at /
    return app
