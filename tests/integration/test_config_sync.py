"""A key or budget command that reports success is in force on every gateway at once.

Issue #11 item 8: eight clients keep sending requests through two real `sluice serve`
processes on one database (SQLite file, or PostgreSQL), while the CLI changes a key or a
budget. No request that started after the CLI returned may see the old configuration. The
gateways poll only every 5 s here, so the polling safety net cannot be what passes the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock

from services import ensure_postgres

SLUICE = str(Path(sys.executable).parent / "sluice")
MODEL = "claude-exact-20250101"  # priced by override: $0 in, $5 out per MTok: $0.01 a call
BODY = json.dumps(
    {"model": MODEL, "max_tokens": 2000, "messages": [{"role": "user", "content": "x"}]}
).encode()
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def cli(config: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        *args,
        "--json",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == expect, err.decode()
    return json.loads(out) if out.strip() else {}  # type: ignore[no-any-return]


@dataclass
class Setup:
    config: Path
    urls: list[str]
    key: str
    key_id: str


async def _start(config: Path) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return url, proc
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None, "gateway exited"
            await asyncio.sleep(0.05)
    proc.kill()  # never leave a half-started gateway behind
    await proc.wait()
    raise AssertionError("gateway did not become ready")


@pytest.fixture(params=["sqlite", "postgresql"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    admin = name = None
    if request.param == "postgresql":
        ensure_postgres()
        name = f"sluice_sync_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
        await admin.execute(f'CREATE DATABASE "{name}"')
        database = f"postgresql://postgres@127.0.0.1:5432/{name}"
    else:
        database = f"sqlite:///{tmp_path / 'sync.db'}"
    reply = Reply([TextBlock("ok")], usage=FakeUsage(input_tokens=0, output_tokens=2000))
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with FakeAnthropic(Scenario(reply), max_recorded=10) as fake:
            config = tmp_path / "sluice.yaml"
            config.write_text(
                f"database: {database}\nsecret_key: sync-secret\n"
                "server: {log_level: warning, key_refresh_seconds: 5}\n"
                "metrics: {enabled: false}\n"
                "ledger: {flush_interval_ms: 20}\n"
                f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-s, "
                f"base_url: '{fake.url}'}}\n"
                f"pricing:\n  overrides:\n    {MODEL}: {{input_per_mtok: 0, output_per_mtok: 5}}\n"
            )
            created = await cli(config, "keys", "create", "--name", "a", "--principal", "alice")
            urls = []
            for _ in range(2):
                url, proc = await _start(config)
                urls.append(url)
                procs.append(proc)
            yield Setup(config, urls, created["key"], created["id"])
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


async def send(urls: list[str], key: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> int:
            async with s.post(
                f"{urls[i % len(urls)]}/v1/messages", data=BODY, headers={"x-api-key": key}
            ) as r:
                await r.read()
                return r.status

        return [await one(i) for i in range(n)]


async def under_load(
    setup: Setup, change: Callable[[], Awaitable[Any]], key: str | None = None
) -> tuple[list[int], list[int]]:
    """Run ``change`` while 8 clients send requests to both gateways; the statuses of the
    requests that started before it began, and of those that started after it returned."""
    loop = asyncio.get_running_loop()
    done_at: list[float] = []
    began: list[float] = []
    results: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def client(i: int, s: aiohttp.ClientSession) -> None:
        url = setup.urls[i % len(setup.urls)]
        while not stop.is_set():
            started = loop.time()
            async with s.post(
                f"{url}/v1/messages", data=BODY, headers={"x-api-key": key or setup.key}
            ) as r:
                await r.read()
                results.append((started, r.status))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        clients = [asyncio.create_task(client(i, s)) for i in range(CLIENTS)]
        await asyncio.sleep(0.5)
        began.append(loop.time())
        await change()
        done_at.append(loop.time())
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)
    before = [status for started, status in results if started < began[0]]
    after = [status for started, status in results if started >= done_at[0]]
    assert len(after) >= 20, "too few requests after the change to judge"
    return before, after


async def budget(setup: Setup, limit: str) -> dict[str, Any]:
    return await cli(
        setup.config,
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        "alice",
        "--window",
        "month",
        "--limit",
        limit,
    )


async def spend(setup: Setup, n: int) -> None:
    """n calls at $0.01 each, in the ledger before the change (rows flush every 20 ms)."""
    assert await send(setup.urls, setup.key, n) == [200] * n
    await asyncio.sleep(0.5)


async def test_budget_create_blocks_at_once(setup: Setup) -> None:
    await spend(setup, 3)
    before, after = await under_load(setup, lambda: budget(setup, "0.02"))
    assert 200 in before
    assert set(after) == {402}, after


async def test_budget_update_blocks_at_once(setup: Setup) -> None:
    await spend(setup, 3)
    created = await budget(setup, "1000")
    _, after = await under_load(
        setup, lambda: cli(setup.config, "budgets", "update", created["id"], "--limit", "0.02")
    )
    assert set(after) == {402}, after


async def test_budget_delete_admits_at_once(setup: Setup) -> None:
    await spend(setup, 3)
    created = await budget(setup, "0.02")
    before, after = await under_load(
        setup, lambda: cli(setup.config, "budgets", "delete", created["id"])
    )
    assert 402 in before
    assert set(after) == {200}, after


async def test_budget_reset_admits_at_once(setup: Setup) -> None:
    """An exhausted budget, reset: the next request on each gateway is admitted (the spend
    before the reset no longer counts)."""
    await spend(setup, 6)
    created = await budget(setup, "0.05")
    assert await send(setup.urls, setup.key, 2) == [402, 402]
    await cli(setup.config, "budgets", "reset", created["id"])
    assert await send(setup.urls, setup.key, 2) == [200, 200]


@pytest.mark.parametrize(("command", "refused"), [("disable", 403), ("revoke", 403)])
async def test_key_status_change_refuses_at_once(setup: Setup, command: str, refused: int) -> None:
    before, after = await under_load(
        setup, lambda: cli(setup.config, "keys", command, setup.key_id)
    )
    assert 200 in before
    assert set(after) == {refused}, after


async def test_key_rotate_kills_old_secret_at_once(setup: Setup) -> None:
    rotated: list[dict[str, Any]] = []

    async def rotate() -> None:
        rotated.append(await cli(setup.config, "keys", "rotate", setup.key_id, "--grace", "0"))

    _, after = await under_load(setup, rotate)
    assert set(after) == {401}, after
    assert await send(setup.urls, rotated[0]["key"], 2) == [200, 200]


async def test_key_update_policy_applies_at_once(setup: Setup) -> None:
    before, after = await under_load(
        setup,
        lambda: cli(
            setup.config, "keys", "update", setup.key_id, "--set", 'models_allowed=["other"]'
        ),
    )
    assert 200 in before
    assert 200 not in after and len(set(after)) == 1, after


async def test_cli_ignores_gateways_that_are_gone(tmp_path: Path) -> None:
    """With no gateway running the command returns at once; a row left by a gateway that
    crashed (its heartbeat stale) is not waited for."""
    import sqlite3

    db = tmp_path / "alone.db"
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"database: sqlite:///{db}\nsecret_key: s\nserver: {{config_ack_timeout_s: 60}}\n"
    )
    await cli(config, "keys", "create", "--name", "warm")  # migrations out of the way
    with sqlite3.connect(db) as conn:
        conn.execute("insert into replicas values ('crashed:1:abc', 1000, 0)")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await cli(config, "keys", "create", "--name", "k")
    assert loop.time() - started < 30  # a wait would last the whole 60 s


async def test_cli_names_a_gateway_that_does_not_apply_the_change(tmp_path: Path) -> None:
    """A gateway alive but stuck (its heartbeat fresh, its applied version old): the command
    still prints its result (a new key's secret is shown only once), says which gateway did
    not confirm, and exits 3 after config_ack_timeout_s."""
    import sqlite3
    import time

    db = tmp_path / "stuck.db"
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"database: sqlite:///{db}\nsecret_key: s\nserver: {{config_ack_timeout_s: 0.5}}\n"
    )
    await cli(config, "keys", "create", "--name", "warm")
    stop = asyncio.Event()

    async def stuck_gateway() -> None:
        with sqlite3.connect(db) as conn:
            while not stop.is_set():
                conn.execute(
                    "insert or replace into replicas values ('stuck-host:1:abc', ?, 0)",
                    (int(time.time() * 1000),),
                )
                conn.commit()
                await asyncio.sleep(0.1)

    beating = asyncio.create_task(stuck_gateway())
    try:
        proc = await asyncio.create_subprocess_exec(
            SLUICE,
            "keys",
            "create",
            "--name",
            "k",
            "--json",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    finally:
        stop.set()
        await beating
    assert proc.returncode == 3
    assert json.loads(out)["key"].startswith("lw_vk_")
    message = " ".join(err.decode().split())
    assert "stuck-host:1:abc" in message and "did not confirm" in message
