"""Budgets that hold exactly across replicas: two `sluice serve` processes on one PostgreSQL
database and one Redis, 300 concurrent requests against a $1.00 budget."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock

from services import ensure_postgres, ensure_redis

SLUICE = str(Path(sys.executable).parent / "sluice")
MODEL = "claude-exact-20250101"  # priced by override: $0 in, $5 out per MTok
REDIS_URL = "redis://127.0.0.1:6379/14"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        SLUICE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[Path, str]]:
    ensure_postgres()
    ensure_redis()
    name = f"sluice_rep_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    async with FakeAnthropic(
        Scenario(Reply([TextBlock("ok")], usage=FakeUsage(input_tokens=0, output_tokens=2000)))
    ) as fake:
        config = tmp_path / "sluice.yaml"
        config.write_text(
            f"database: {dsn}\nredis: {REDIS_URL}\nsecret_key: replica-secret\n"
            "server: {log_level: warning}\n"
            f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-r, "
            f"base_url: '{fake.url}'}}\n"
            "pricing:\n  overrides:\n"
            f"    {MODEL}: {{input_per_mtok: 0, output_per_mtok: 5}}\n"
        )
        try:
            yield config, dsn
        finally:
            await redis.flushdb()
            await redis.aclose()
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


async def start_replica(config: Path) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200 and (await r.json())["redis"] is True:
                        return url, proc
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None
            await asyncio.sleep(0.05)
    raise AssertionError("replica did not become ready")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)


async def hammer(urls: list[str], key: str, n: int, max_tokens: int) -> list[int]:
    body = json.dumps(
        {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "x"}]}
    ).encode()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def one(i: int) -> int:
            async with s.post(
                f"{urls[i % len(urls)]}/v1/messages", data=body, headers={"x-api-key": key}
            ) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*[one(i) for i in range(n)]))


async def ledger_total(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "select count(*) filter (where status = 200), coalesce(sum(cost_micros), 0) from ledger"
        )
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


@pytest.mark.parametrize(("max_tokens", "exact"), [(2000, True), (4000, False)])
async def test_budget_holds_across_two_replicas(
    shared: tuple[Path, str], max_tokens: int, exact: bool
) -> None:
    config, dsn = shared
    key = json.loads(
        await run(
            "keys",
            "create",
            "--name",
            "alice",
            "--principal",
            "alice",
            "--json",
            "--config",
            str(config),
        )
    )["key"]
    await run(
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        "alice",
        "--window",
        "month",
        "--limit",
        "1.00",
        "--on-breach",
        "block",
        "--json",
        "--config",
        str(config),
    )
    replicas = [await start_replica(config), await start_replica(config)]
    try:
        statuses = await hammer([u for u, _ in replicas], key, 300, max_tokens)
    finally:
        for _, proc in replicas:
            await stop(proc)
    ok = statuses.count(200)
    assert set(statuses) <= {200, 402}
    served, spent = await ledger_total(dsn)
    assert served == ok
    assert spent == ok * 10_000  # each call costs exactly $0.01
    if exact:
        # Reservation == actual cost: exactly 100 fit in $1.00, the other 200 are refused.
        assert (ok, statuses.count(402), spent) == (100, 200, 1_000_000)
    else:
        # Reservations of $0.02 for $0.01 calls: refused early, never over the limit.
        assert 50 <= ok <= 100 and spent <= 1_000_000


async def test_rate_limits_hold_across_two_replicas(
    shared: tuple[Path, str], tmp_path: Path
) -> None:
    import time

    config, _ = shared
    vk = tmp_path / "vk.yaml"
    vk.write_text("rate_limits: {rpm: 10, rpd: 1000, max_concurrent: 50}\n")
    key = json.loads(
        await run(
            "keys",
            "create",
            "--name",
            "rl",
            "--config-file",
            str(vk),
            "--json",
            "--config",
            str(config),
        )
    )["key"]
    replicas = [await start_replica(config), await start_replica(config)]
    try:
        if time.time() % 60 > 50:  # keep the burst inside one UTC minute
            await asyncio.sleep(61 - time.time() % 60)
        statuses = await hammer([u for u, _ in replicas], key, 30, 16)
    finally:
        for _, proc in replicas:
            await stop(proc)
    assert statuses.count(200) == 10 and statuses.count(429) == 20
