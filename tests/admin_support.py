"""A gateway and the admin API beside it (same loop, same database), with admin tokens of
every kind minted, on SQLite or on a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from sluice.base.clock import SystemClock
from sluice.governance.admin_tokens import TokenAdmin
from sluice.store.admin_tokens_repo import AdminTokensRepo
from sluice.testing.admin_server import AdminServer
from sluice.testing.gateway import GatewayServer

from services import PG_ADMIN, ensure_postgres
from support import SECRET, make_config

BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":64,'
    b'"messages":[{"role":"user","content":"hello there"}]}'
)


@dataclass
class Plane:
    gateway: GatewayServer
    admin: AdminServer
    tokens: dict[str, str]  # admin, viewer, web (admin of project web), ops (of project ops)
    database: str

    async def call(
        self, method: str, path: str, token: str | None = "admin", json: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {}
        if token is not None:
            headers["authorization"] = f"Bearer {self.tokens.get(token, token)}"
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, f"{self.admin.url}/api/v1{path}", json=json, headers=headers) as r,
        ):
            raw = await r.read()
            return r.status, orjson.loads(raw) if raw else None, dict(r.headers)

    async def infer(self, key: str, body: bytes = BODY) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(f"{self.gateway.url}/v1/messages", data=body, headers={"x-api-key": key}) as r,
        ):
            return r.status, orjson.loads(await r.read())


@asynccontextmanager
async def _database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'sluice.db'}"
        return
    ensure_postgres()
    name = f"sluice_admin_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.close()


@asynccontextmanager
async def admin_plane(
    kind: str, tmp_path: Path, upstream_url: str, extra_yaml: str = "", provider_yaml: str = ""
) -> AsyncIterator[Plane]:
    async with _database(kind, tmp_path) as database:
        # key_refresh_seconds 5: the poll cannot be what makes a change apply at once.
        config = make_config(
            tmp_path / "unused.db",
            upstream_url,
            "admin: {port: 0}\n" + extra_yaml,
            provider_yaml,
            refresh_s=5,
        )
        config = config.model_copy(update={"database": database})
        gateway = GatewayServer(config)
        await gateway.start()
        admin = AdminServer(
            config,
            counters=lambda: gateway.app.services.budgets.counters,
            circuits=lambda: gateway.app.services.circuits(),
        )
        try:
            await admin.start()
            minter = TokenAdmin(
                AdminTokensRepo(gateway.app.services.engine), SECRET.encode(), SystemClock()
            )
            tokens = {}
            for name, role, project in (
                ("admin", "admin", None),
                ("viewer", "viewer", None),
                ("web", "admin", "web"),
                ("ops", "admin", "ops"),
            ):
                tokens[name] = (await minter.create(f"{name}-token", role, project)).token
            yield Plane(gateway, admin, tokens, database)
        finally:
            await admin.stop()
            await gateway.stop()
