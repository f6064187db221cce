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
from typing import Any

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


async def mint(config: Path, *args: str) -> dict[str, Any]:
    """`sluice keys create --json` with the given options; the created key as JSON."""
    out = await run("keys", "create", *args, "--json", "--config", str(config))
    return json.loads(out)  # type: ignore[no-any-return]


async def monthly_budget(config: Path, principal: str, limit: str) -> dict[str, Any]:
    """A blocking monthly budget on a principal, created with the CLI."""
    out = await run(
        "budgets",
        "create",
        "--scope",
        "principal",
        "--target",
        principal,
        "--window",
        "month",
        "--limit",
        limit,
        "--on-breach",
        "block",
        "--json",
        "--config",
        str(config),
    )
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[Path, str, FakeAnthropic]]:
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
            yield config, dsn, fake
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
        for _ in range(600):  # 30 s: the test machine is shared and often loaded
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200 and (await r.json())["redis"] is True:
                        return url, proc
            except aiohttp.ClientConnectionError:
                pass
            assert proc.returncode is None
            await asyncio.sleep(0.05)
    proc.kill()  # never leave a half-started replica behind
    await proc.wait()
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
    shared: tuple[Path, str, FakeAnthropic], max_tokens: int, exact: bool
) -> None:
    config, dsn, _ = shared
    key = (await mint(config, "--name", "alice", "--principal", "alice"))["key"]
    await monthly_budget(config, "alice", "1.00")
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


@pytest.mark.parametrize(
    ("limits", "dimension"),
    [
        ("{rpm: 10}", "rpm"),
        ("{rpd: 10}", "rpd"),
        # TPM is set below to exactly ten requests' estimate (body bytes / 3 + max_tokens).
        ("{tpm: TEN}", "tpm"),
        ("{max_concurrent: 10}", "max_concurrent"),
    ],
)
async def test_rate_limits_hold_across_two_replicas(
    shared: tuple[Path, str, FakeAnthropic], tmp_path: Path, limits: str, dimension: str
) -> None:
    import time

    from sluice.testing import Fault

    config, _, fake = shared
    # Slow answers keep all requests in flight together (what max_concurrent counts).
    fake.set_default(Scenario(Reply([TextBlock("ok")]), Fault(first_byte_delay=1.0)))
    body = json.dumps(
        {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
    )
    ten = 10 * (len(body) // 3 + 16)
    vk = tmp_path / "vk.yaml"
    vk.write_text(f"rate_limits: {limits.replace('TEN', str(ten))}\n")
    key = (await mint(config, "--name", "rl", "--config-file", str(vk)))["key"]
    replicas = [await start_replica(config), await start_replica(config)]
    try:
        if time.time() % 60 > 50:  # keep the burst inside one UTC minute
            await asyncio.sleep(61 - time.time() % 60)
        statuses = await hammer([u for u, _ in replicas], key, 30, 16)
    finally:
        for _, proc in replicas:
            await stop(proc)
    assert statuses.count(200) == 10 and statuses.count(429) == 20, (dimension, statuses)


@pytest.mark.parametrize("stream", [True, False])
async def test_sigkill_mid_load_loses_no_acknowledged_row(tmp_path: Path, stream: bool) -> None:
    """Replica A is killed while requests are in flight. With DEFAULT ledger settings, every
    response a client received in full has its ledger row, and A's reservations are
    reclaimed (issue #11 item 9)."""
    from sluice.governance.windows import window_bounds
    from sluice.testing import Fault

    ensure_postgres()
    ensure_redis()
    name = f"sluice_crash_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    slow = Scenario(
        Reply(
            [TextBlock("a b c d e f", chunks=6)],
            usage=FakeUsage(input_tokens=0, output_tokens=2000),
        ),
        Fault(event_delay=0.06),
    )
    try:
        async with FakeAnthropic(slow) as fake:
            config = tmp_path / "crash.yaml"
            config.write_text(
                f"database: {dsn}\nredis: {REDIS_URL}\nsecret_key: crash-secret\n"
                "server: {log_level: warning, key_refresh_seconds: 0.5}\n"
                "ledger: {flush_interval_ms: 5000}\n"
                "budget_reservation_ttl_s: 2\n"
                f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-r, "
                f"base_url: '{fake.url}'}}\n"
                f"pricing:\n  overrides:\n    {MODEL}: {{input_per_mtok: 0, output_per_mtok: 5}}\n"
            )
            key = (await mint(config, "--name", "c", "--principal", "alice"))["key"]
            budget = await monthly_budget(config, "alice", "100")
            (url_a, proc_a), (url_b, proc_b) = (
                await start_replica(config),
                await start_replica(config),
            )
            body = json.dumps(
                {
                    "model": MODEL,
                    "max_tokens": 2000,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "x"}],
                }
            ).encode()
            acknowledged: list[str] = []

            async def one(session: aiohttp.ClientSession, url: str) -> None:
                try:
                    async with session.post(
                        f"{url}/v1/messages", data=body, headers={"x-api-key": key}
                    ) as r:
                        data = await r.read()
                        complete = (
                            data.endswith(b'{"type":"message_stop"}\n\n')
                            if stream
                            else json.loads(data)["type"] == "message"
                        )
                        if r.status == 200 and complete:
                            acknowledged.append(r.headers["request-id"])
                except aiohttp.ClientError:
                    pass  # the killed replica's in-flight streams break

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                # A first wave completes on A: acknowledged, but A's batch timer (5 s) has
                # not fired, so only the commit before the last byte can have saved them.
                await asyncio.gather(*[one(s, url_a) for _ in range(20)])
                assert len(acknowledged) == 20
                load = [asyncio.create_task(one(s, url_a if i % 2 else url_b)) for i in range(80)]
                await asyncio.sleep(0.3)
                proc_a.kill()  # SIGKILL: no shutdown, no final flush
                await proc_a.wait()
                await asyncio.gather(*load)
                # Requests after the crash still flow through B.
                await asyncio.gather(*[one(s, url_b) for _ in range(5)])
            assert len(acknowledged) >= 65
            window_start = window_bounds("month", int(__import__("time").time() * 1000))[0]
            reserved_key = f"sluice:b:{budget['id']}:{window_start}:r"
            for _ in range(100):  # A's orphaned reservations expire and B reclaims them
                if int(await redis.get(reserved_key) or 0) == 0:
                    break
                await asyncio.sleep(0.1)
            assert int(await redis.get(reserved_key) or 0) == 0
            await stop(proc_b)
            conn = await asyncpg.connect(dsn)
            try:
                rows = {r["request_id"] for r in await conn.fetch("select request_id from ledger")}
            finally:
                await conn.close()
            assert set(acknowledged) <= rows
    finally:
        await redis.flushdb()
        await redis.aclose()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_key_disable_reaches_both_replicas_within_5s(
    shared: tuple[Path, str, FakeAnthropic],
) -> None:
    config, _, _ = shared
    created = await mint(config, "--name", "p")
    replicas = [await start_replica(config), await start_replica(config)]
    try:
        urls = [u for u, _ in replicas]
        assert await hammer(urls, created["key"], 2, 16) == [200, 200]  # cached on both
        await run("keys", "disable", created["id"], "--json", "--config", str(config))
        loop = asyncio.get_running_loop()
        started = loop.time()
        while set(await hammer(urls, created["key"], 2, 16)) != {403}:
            assert loop.time() - started < 5.0, "disable did not reach both replicas in 5 s"
            await asyncio.sleep(0.1)
    finally:
        for _, proc in replicas:
            await stop(proc)


async def test_tool_verdict_is_shared_by_replicas(
    shared: tuple[Path, str, FakeAnthropic], tmp_path: Path
) -> None:
    """Claude Code's non-streaming retry lands on the other replica and is still refused
    without a second upstream call."""
    from sluice.testing import ToolUseBlock

    config, _, fake = shared
    vk = tmp_path / "deny.yaml"
    vk.write_text('policy_rules: {tools: {deny: ["^Bash$"]}}\n')
    key = (await mint(config, "--name", "nb", "--config-file", str(vk)))["key"]
    fake.set_default(Scenario(Reply([ToolUseBlock("Bash", {"command": "rm -rf /"})])))
    (url_a, proc_a), (url_b, proc_b) = await start_replica(config), await start_replica(config)
    try:
        body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(
                f"{url_a}/v1/messages",
                headers={"x-api-key": key},
                data=json.dumps({**body, "stream": True}),
            ) as r:
                assert b"tool_not_allowed" in await r.read()
            async with s.post(
                f"{url_b}/v1/messages", headers={"x-api-key": key}, data=json.dumps(body)
            ) as r:
                assert r.status == 403
                assert (await r.json())["error"]["code"] == "tool_not_allowed"
        assert len(fake.messages_requests()) == 1
    finally:
        await stop(proc_a)
        await stop(proc_b)
