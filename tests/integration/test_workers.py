"""`sluice serve --workers N`: counters must hold across the workers of one node. Without
Redis each worker would count alone, so several workers are refused; with Redis, budgets,
rate limits and remembered tool verdicts hold across both workers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from test_replicas import MODEL, mint, monthly_budget
from test_serve import SLUICE, clean_env, serving
from test_serve_telemetry import two_free_ports

from sluice.testing import FakeAnthropic, FakeUsage, Reply, Scenario, TextBlock, ToolUseBlock

from services import ensure_redis

REDIS_URL = "redis://127.0.0.1:6379/9"  # a database of its own, flushed per test
BODY = {"model": MODEL, "max_tokens": 2000, "messages": [{"role": "user", "content": "x"}]}


async def test_workers_without_redis_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "sluice.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'w.db'}\nsecret_key: s\n")
    proc = await asyncio.create_subprocess_exec(
        SLUICE,
        "serve",
        "--config",
        str(config),
        "--workers",
        "2",
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:  # it served instead of refusing
            proc.terminate()
            await proc.wait()
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "redis:" in lines[0] and "workers" in lines[0], lines
    # The same setting in the file is a config problem.
    config.write_text(
        f"database: sqlite:///{tmp_path / 'w.db'}\nsecret_key: s\nserver: {{workers: 2}}\n"
    )
    check = await asyncio.create_subprocess_exec(
        SLUICE,
        "config",
        "check",
        "--config",
        str(config),
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await check.communicate()
    assert check.returncode == 1 and "redis:" in err.decode()


@pytest.fixture
async def two_workers(
    tmp_path: Path,
) -> AsyncIterator[tuple[Path, str, int, FakeAnthropic]]:
    """A config on SQLite + Redis, served by two workers; (config, url, metrics base, fake)."""
    ensure_redis()
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    base = two_free_ports()
    reply = Reply([TextBlock("ok")], usage=FakeUsage(input_tokens=0, output_tokens=2000))
    async with FakeAnthropic(Scenario(reply)) as fake:
        config = tmp_path / "sluice.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'w.db'}\nredis: {REDIS_URL}\nsecret_key: s\n"
            f"server: {{log_level: warning, key_refresh_seconds: 0.5}}\nmetrics: {{port: {base}}}\n"
            f"providers:\n  anthropic-primary: {{type: anthropic, api_key: sk-ant-w, "
            f"base_url: '{fake.url}'}}\n"
            f"pricing:\n  overrides:\n    {MODEL}: {{input_per_mtok: 0, output_per_mtok: 5}}\n"
        )
        try:
            async with serving(tmp_path, "--config", str(config), "--workers", "2") as (url, _):
                async with aiohttp.ClientSession() as s:
                    await served_by_worker(s, base)  # both workers are up
                yield config, url, base, fake
        finally:
            await redis.flushdb()
            await redis.aclose()


async def served_by_worker(session: aiohttp.ClientSession, base: int) -> list[float]:
    """sluice_requests_total of each worker (each serves metrics on its own port)."""
    totals = []
    for port in (base, base + 1):
        for _ in range(600):
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no metrics on port {port}")
        totals.append(
            sum(
                s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "sluice_requests_total"
            )
        )
    return totals


async def burst(url: str, key: str, n: int, body: dict[str, object] = BODY) -> list[int]:
    """n concurrent requests, each on its own connection (so the kernel spreads them)."""
    data = json.dumps(body).encode()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def one() -> int:
            async with s.post(f"{url}/v1/messages", data=data, headers={"x-api-key": key}) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*[one() for _ in range(n)]))


async def test_two_workers_share_budgets_rate_limits_and_verdicts(
    two_workers: tuple[Path, str, int, FakeAnthropic], tmp_path: Path
) -> None:
    config, url, base, fake = two_workers
    # Budgets: $0.10 is worth exactly ten $0.01 calls, whichever worker admits them.
    alice = (await mint(config, "--name", "alice", "--principal", "alice"))["key"]
    await monthly_budget(config, "alice", "0.10")
    await asyncio.sleep(1.2)  # each worker's budget poll (0.5 s) has seen the new budget
    statuses = await burst(url, alice, 40)
    assert (statuses.count(200), statuses.count(402)) == (10, 30), statuses

    # Rate limits: rpm 10 holds across both workers.
    vk = tmp_path / "rl.yaml"
    vk.write_text("rate_limits: {rpm: 10}\n")
    limited = (await mint(config, "--name", "rl", "--config-file", str(vk)))["key"]
    if time.time() % 60 > 50:  # keep the burst inside one UTC minute
        await asyncio.sleep(61 - time.time() % 60)
    statuses = await burst(url, limited, 30, {**BODY, "max_tokens": 16})
    assert (statuses.count(200), statuses.count(429)) == (10, 20), statuses

    # Verdicts: the stream's refusal is remembered for every retry, on either worker.
    deny = tmp_path / "deny.yaml"
    deny.write_text('policy_rules: {tools: {deny: ["^Bash$"]}}\n')
    guarded = (await mint(config, "--name", "nb", "--config-file", str(deny)))["key"]
    fake.set_default(Scenario(Reply([ToolUseBlock("Bash", {"command": "rm -rf /"})])))
    upstream_before = len(fake.messages_requests())
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/messages",
            headers={"x-api-key": guarded},
            data=json.dumps({**BODY, "stream": True}),
        ) as r,
    ):
        assert b"tool_not_allowed" in await r.read()
    # Both workers must answer some of the retries (else this proves nothing about sharing).
    # They accept from one socket, so a burst can all land on one: burst again until both did.
    before = after = await served_by_worker_fresh(base)
    for _ in range(5):
        statuses = await burst(url, guarded, 20)
        assert statuses == [403] * 20
        after = await served_by_worker_fresh(base)
        if all(a > b for a, b in zip(after, before, strict=True)):
            break
    assert len(fake.messages_requests()) == upstream_before + 1  # no retry went upstream
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def served_by_worker_fresh(base: int) -> list[float]:
    async with aiohttp.ClientSession() as s:
        return await served_by_worker(s, base)
