"""Shared test plumbing: configs, a running gateway with a minted key, ledger reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from sluice.base.clock import Clock, SystemClock
from sluice.config import SluiceConfig, parse_config
from sluice.config.vk import VirtualKeyConfig
from sluice.governance.key_admin import KeyAdmin, MintedKey
from sluice.store import config_version
from sluice.store.keys_repo import KeysRepo
from sluice.store.tables import ledger
from sluice.testing.gateway import GatewayServer

FIXTURES = Path(__file__).parent / "fixtures" / "claude-code"
SECRET = "test-hmac-secret"
PROVIDER_KEY = "sk-ant-upstream-provider-key-0123456789"


def make_config(
    db_path: Path,
    upstream_url: str,
    extra_yaml: str = "",
    provider_yaml: str = "",
    refresh_s: float = 0.5,
    server_yaml: str = "",
) -> SluiceConfig:
    """``provider_yaml``: extra provider lines (4-space indent); ``extra_yaml``: top level;
    ``server_yaml``: more ``server:`` members (``keepalive_s: 0.2``)."""
    server = f"host: 127.0.0.1, port: 0, key_refresh_seconds: {refresh_s}" + (
        f", {server_yaml}" if server_yaml else ""
    )
    return parse_config(
        f"""
server: {{{server}}}
metrics: {{port: 0}}
database: sqlite:///{db_path}
secret_key: {SECRET}
ledger: {{flush_interval_ms: 20}}
providers:
  anthropic-primary:
    type: anthropic
    api_key: {PROVIDER_KEY}
    base_url: "{upstream_url}"
    models: [claude-opus-4-8, claude-sonnet-5, claude-haiku-4-5-20251001]
{provider_yaml}
{extra_yaml}
"""
    )


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """A small aiohttp app (a webhook receiver, a hostile upstream) on a free local port:
    its base URL, and the server is gone after the block."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def database_files(directory: Path, name: str = "sluice.db") -> list[Path]:
    """Every file a SQLite database at ``directory/name`` keeps: the file, its WAL and shared
    memory, and the ledger journal's segments (a folder beside it)."""
    named = [p for p in directory.iterdir() if p.name.startswith(name)]
    return [f for p in named for f in ([p] if p.is_file() else p.iterdir()) if f.is_file()]


def fixture_path(name: str) -> Path:
    """A fixture of the pinned CLI by file name, or any capture as ``<dir>/<file>``."""
    return FIXTURES.parent / name if "/" in name else FIXTURES / name


def lane_fixtures() -> list[str]:
    """Every captured request the Anthropic lane takes (``POST /v1/messages``, the warm-up),
    from every CLI version captured: ``claude-code/<file>``, ``claude-code-<version>/<file>``."""
    names = []
    for directory in sorted(FIXTURES.parent.glob("claude-code*")):
        for path in sorted(directory.glob("*.json")):
            captured = json.loads(path.read_text())
            if captured["path"].startswith("/v1/messages") or captured["method"] == "HEAD":
                names.append(f"{directory.name}/{path.name}")
    return names


def fixture_request(name: str) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body bytes) of a captured Claude Code request, re-encoded compactly."""
    data = json.loads(fixture_path(name).read_text())
    body = data.get("body")
    raw = (
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if body is not None
        else b""
    )
    return [(h[0], h[1]) for h in data["headers"]], raw


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.json"))


@dataclass
class Gateway:
    server: GatewayServer
    admin: KeyAdmin
    minted: MintedKey
    db_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def key(self) -> str:
        return self.minted.secret

    async def mint(self, **fields: Any) -> MintedKey:
        fields.setdefault("name", "extra")
        return await self.admin.create(**fields)

    async def ledger_rows(self) -> list[dict[str, Any]]:
        state = self.server.app.services
        assert state.ledger is not None and state.engine is not None
        await state.ledger.flush()
        async with state.engine.connect() as conn:
            rows = (await conn.execute(select(ledger).order_by(ledger.c.created_at))).mappings()
            return [dict(r) for r in rows.all()]

    async def ledger_row(self, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The row for one request; waits because settling may follow the response."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for row in await self.ledger_rows():
                if row["request_id"] == request_id:
                    return row
            if loop.time() > deadline:
                raise AssertionError(f"no ledger row for {request_id}")
            await asyncio.sleep(0.02)


async def start_gateway(
    db_path: Path,
    upstream_url: str,
    extra_yaml: str = "",
    key_config: VirtualKeyConfig | None = None,
    provider_yaml: str = "",
    clock: Clock | None = None,
    refresh_s: float = 0.5,
    server_yaml: str = "",
) -> Gateway:
    config = make_config(db_path, upstream_url, extra_yaml, provider_yaml, refresh_s, server_yaml)
    server = GatewayServer(config, clock=clock)
    await server.start()
    state = server.app.services
    assert state.engine is not None
    admin = KeyAdmin(KeysRepo(state.engine), SECRET.encode(), clock or SystemClock())
    minted = await admin.create(
        name="alice-laptop", principal="alice", project="web", team="core", config=key_config
    )
    await applied(server)
    return Gateway(server, admin, minted, db_path)


async def applied(server: GatewayServer, timeout: float = 5.0) -> None:
    """Wait until the gateway has applied every committed key/budget change (config sync), as
    the CLI does: a test then starts from a settled gateway, not one about to reload."""
    state = server.app.services
    sync = state.config_sync
    assert state.engine is not None and sync is not None
    target = await config_version.current(state.engine)
    deadline = asyncio.get_running_loop().time() + timeout
    while sync.applied < target:
        assert asyncio.get_running_loop().time() < deadline, "config change not applied"
        await asyncio.sleep(0.01)


# --- Prometheus scrapes -------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(gw: Gateway) -> Samples:
    server = gw.server.app.services.metrics_server
    assert server is not None and server.port is not None
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{server.port}/metrics") as r,
    ):
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/plain")
        return parse(await r.text())
