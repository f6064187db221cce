"""Budgets and rate limits on the request path (single process, SQLite, in-process counters)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from sluice.base.clock import ManualClock
from sluice.config.vk import VirtualKeyConfig
from sluice.store.budgets_repo import Budget, BudgetsRepo
from sluice.testing import FakeAnthropic, FakeUsage, Fault, Reply, Scenario, TextBlock

from support import Gateway, serve_app, start_gateway

# haiku-4-5: $1 in, $5 out per MTok. The fake's usage (25 in, 12 out) costs 85 micro-USD.
# The body is ~100 bytes (34 tokens at 3 bytes each) + max_tokens 64 of output: the
# worst case reserved at admission is 34 + 320 = 354 micro-USD.
BODY = (
    b'{"model":"claude-haiku-4-5-20251001","max_tokens":64,'
    b'"messages":[{"role":"user","content":"hello there"}]}'
)
CALL_MICROS = 85
WEBHOOK_SECRET = "whsec-test-0123456789"


async def post(gw: Gateway, key: str, body: bytes = BODY) -> tuple[int, Any, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/messages", data=body, headers={"x-api-key": key}) as r,
    ):
        return r.status, r.headers.copy(), orjson.loads(await r.read())


async def add_budget(gw: Gateway, clock_ms: int, **fields: Any) -> Budget:
    engine = gw.server.app.services.engine
    assert engine is not None
    budget = Budget(
        id=fields.pop("id", "B" * 26), created_at=clock_ms, updated_at=clock_ms, **fields
    )
    await BudgetsRepo(engine).insert(budget)
    gate = gw.server.app.services.budgets
    await gate.refresh()  # as the 2 s poll would
    return budget


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, list[tuple[dict[str, Any], str, bytes]]]]:
    received: list[tuple[dict[str, Any], str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        received.append((orjson.loads(raw), request.headers.get("x-sluice-signature", ""), raw))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serve_app(app) as url:
        yield f"{url}/hook", received


async def test_block_budget_refuses_at_the_limit(gateway: Gateway, fake: FakeAnthropic) -> None:
    await add_budget(
        gateway,
        0,
        scope="principal",
        target="alice",
        window="month",
        limit_micros=1000,
        on_breach="block",
        name="alice-monthly",
    )
    statuses = [(await post(gateway, gateway.key))[0] for _ in range(10)]
    # 85 per call settled; admission needs spent + 354 <= 1000: calls 1..8 fit, the 9th not.
    assert statuses == [200] * 8 + [402] * 2
    status, _, body = await post(gateway, gateway.key)
    assert status == 402
    error = body["error"]
    assert error["code"] == "budget_exceeded" and body["type"] == "error"
    assert error["meta"]["budget_id"] == "B" * 26
    assert (error["meta"]["scope"], error["meta"]["window"]) == ("principal", "month")
    assert error["meta"]["limit_usd"] == 0.001
    assert error["meta"]["spent_usd"] == 8 * CALL_MICROS / 1e6
    assert "max_tokens" in " ".join(error["tips"])
    assert len(fake.messages_requests()) == 8
    rows = await gateway.ledger_rows()
    assert sum(r["cost_micros"] or 0 for r in rows) == 8 * CALL_MICROS <= 1000
    assert [r["error_code"] for r in rows].count("budget_exceeded") == 3
    # Another principal's key is not touched by alice's budget.
    bob = await gateway.mint(name="bob", principal="bob")
    assert (await post(gateway, bob.secret))[0] == 200


async def test_concurrent_requests_never_overspend(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(Scenario(Reply([TextBlock("ok")]), Fault(first_byte_delay=0.05)))
    await add_budget(
        gateway,
        0,
        scope="virtual_key",
        target=gateway.minted.key.id,
        window="day",
        limit_micros=3000,
        on_breach="block",
    )
    results = await asyncio.gather(*[post(gateway, gateway.key) for _ in range(40)])
    ok = sum(1 for status, _, _ in results if status == 200)
    assert ok >= 1 and {s for s, _, _ in results} <= {200, 402}
    rows = await gateway.ledger_rows()
    spent = sum(r["cost_micros"] or 0 for r in rows)
    assert spent == ok * CALL_MICROS <= 3000  # reservations: never over the limit


async def test_warn_budget_header_and_webhooks_once(
    tmp_path: Path, fake: FakeAnthropic, hooks: Any
) -> None:
    url, received = hooks
    gw = await start_gateway(
        tmp_path / "w.db", fake.url, extra_yaml=f"webhook_secret: {WEBHOOK_SECRET}"
    )
    try:
        await add_budget(
            gw,
            0,
            scope="project",
            target="web",
            window="month",
            limit_micros=500,
            on_breach="warn",
            webhook_url=url,
            name="web",
        )
        seen = []
        for _ in range(9):
            status, headers, _ = await post(gw, gw.key)
            assert status == 200  # warn never blocks
            seen.append(headers.get("x-langwatch-budget-warning"))
        # Spent before call k is 85 (k - 1): 80 % of 500 is passed from the 6th call (425).
        assert seen[:5] == [None] * 5
        assert seen[5:] == ["project:85", "project:102", "project:119", "project:136"]
        await gw.server.app.services.webhooks.drain()
        kinds = [payload["type"] for payload, _, _ in received]
        assert kinds == ["budget.threshold_crossed", "budget.breached"]
        for payload, signature, raw in received:
            expected = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
            assert signature == f"sha256={expected}"
            assert payload["budget_id"] == "B" * 26 and payload["limit_usd"] == 0.0005
    finally:
        await gw.server.stop()


async def test_windows_roll_over_at_utc_boundaries(tmp_path: Path, fake: FakeAnthropic) -> None:
    clock = ManualClock(now_ms=1_795_910_399_000)  # 2026-11-28 23:59:59 UTC
    gw = await start_gateway(tmp_path / "c.db", fake.url, clock=clock)
    try:
        await add_budget(
            gw,
            clock.now_ms(),
            scope="principal",
            target="alice",
            window="day",
            limit_micros=400,
            on_breach="block",
        )
        assert (await post(gw, gw.key))[0] == 200  # 85 spent, 85 + 354 > 400 next
        assert (await post(gw, gw.key))[0] == 402
        clock.advance(2)  # 2026-11-29 00:00:01: a new day
        assert (await post(gw, gw.key))[0] == 200
        assert (await post(gw, gw.key))[0] == 402
    finally:
        await gw.server.stop()


@pytest.mark.parametrize(
    ("limits", "dimension", "allowed"),
    [({"rpm": 3}, "rpm", 3), ({"rpd": 2}, "rpd", 2), ({"tpm": 140}, "tpm", 2)],
)
async def test_rate_limits(
    gateway: Gateway, fake: FakeAnthropic, limits: dict[str, int], dimension: str, allowed: int
) -> None:
    # tpm: 99 tokens estimated at admission (35 for the body + max_tokens 64), corrected to
    # the actual 37 at settle: 0+99 fits, 37+99 fits, 74+99 > 140 does not. Without the
    # correction the second call would already be refused.
    minted = await gateway.mint(config=VirtualKeyConfig.parse({"rate_limits": limits}))
    statuses = []
    for _ in range(allowed + 2):
        status, headers, body = await post(gateway, minted.secret)
        statuses.append(status)
        if status == 429:
            assert body["error"]["code"] == "rate_limited"
            assert headers["x-langwatch-ratelimit-dimension"] == dimension
            assert int(headers["retry-after"]) >= 1
    assert statuses[:allowed] == [200] * allowed and 429 in statuses[allowed:]


async def test_max_concurrent(gateway: Gateway, fake: FakeAnthropic) -> None:
    fake.set_default(
        Scenario(Reply([TextBlock("ok")], usage=FakeUsage()), Fault(first_byte_delay=0.3))
    )
    minted = await gateway.mint(
        config=VirtualKeyConfig.parse({"rate_limits": {"max_concurrent": 2}})
    )
    results = await asyncio.gather(*[post(gateway, minted.secret) for _ in range(4)])
    assert sorted(s for s, _, _ in results) == [200, 200, 429, 429]
    assert (await post(gateway, minted.secret))[0] == 200  # slots come back after settle


async def test_redis_down_fails_closed_for_block_open_for_warn(
    tmp_path: Path, fake: FakeAnthropic
) -> None:
    import socket

    with socket.socket() as s:  # a port where nothing listens: Redis is "down"
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    gw = await start_gateway(
        tmp_path / "r.db", fake.url, extra_yaml=f"redis: redis://127.0.0.1:{dead}/0"
    )
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{gw.url}/readyz") as r:
            # Degraded, not unready: each feature takes its configured outage outcome.
            assert r.status == 200
            ready = await r.json()
            assert (ready["status"], ready["redis"]) == ("degraded", False)
            assert ready["degraded"]["budgets"] == "closed"
        assert (await post(gw, gw.key))[0] == 200  # no budget applies: Redis is not needed
        await add_budget(
            gw,
            0,
            id="W" * 26,
            scope="principal",
            target="alice",
            window="day",
            limit_micros=10**9,
            on_breach="warn",
        )
        assert (await post(gw, gw.key))[0] == 200  # warn budgets fail open
        await add_budget(
            gw,
            0,
            scope="principal",
            target="alice",
            window="day",
            limit_micros=10**9,
            on_breach="block",
        )
        status, _, body = await post(gw, gw.key)
        assert status == 503 and body["error"]["code"] == "budget_unavailable"
    finally:
        await gw.server.stop()


async def test_webhook_retries_and_slack_format(tmp_path: Path, fake: FakeAnthropic) -> None:
    attempts: list[dict[str, Any]] = []

    async def flaky(request: web.Request) -> web.Response:
        attempts.append(orjson.loads(await request.read()))
        return web.Response(status=500 if len(attempts) == 1 else 200)

    app = web.Application()
    app.router.add_post("/slack", flaky)
    async with serve_app(app) as url:
        gw = await start_gateway(tmp_path / "s.db", fake.url)
        try:
            await add_budget(
                gw,
                0,
                scope="team",
                target="core",
                window="week",
                limit_micros=100,
                on_breach="warn",
                webhook_url=f"{url}/slack",
                webhook_format="slack",
                name="core-weekly",
            )
            assert (await post(gw, gw.key))[0] == 200  # 85 of 100: past 80 %
            await gw.server.app.services.webhooks.drain()
            # The first delivery got a 500 and was retried; Slack gets {"text": ...}.
            assert len(attempts) == 2 and attempts[0] == attempts[1]
            assert set(attempts[0]) == {"text"}
            assert "team core has used 80% of its week budget" in attempts[0]["text"]
        finally:
            await gw.server.stop()
