"""Requests that outlive the budget reservation TTL: a running stream keeps its reservation
(renewed by one timer per request), and its actual cost is added exactly once at the end, on
in-process and on Redis counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from test_budgets import BODY, CALL_MICROS, add_budget, post

from sluice.governance.windows import window_bounds
from sluice.testing import FakeAnthropic, Fault, Reply, Scenario, TextBlock

from services import ensure_redis
from support import Gateway, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/10"  # a database of its own, flushed per test
STREAM_BODY = BODY[:-1] + b',"stream":true}'
TTL_S = 1.0


@pytest.fixture(params=["memory", "redis"])
async def short_ttl(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeAnthropic
) -> AsyncIterator[Gateway]:
    extra = f"budget_reservation_ttl_s: {TTL_S}\n"
    redis: Redis | None = None
    if request.param == "redis":
        ensure_redis()
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        extra += f"redis: {REDIS_URL}\n"
    # refresh_s: the budget poll, which also reclaims expired reservations, runs every 0.1 s.
    gw = await start_gateway(tmp_path / "ttl.db", fake.url, extra, refresh_s=0.1)
    try:
        yield gw
    finally:
        await gw.server.stop()
        if redis is not None:
            await redis.flushdb()
            await redis.aclose()


async def stream(gw: Gateway) -> bytes:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{gw.url}/v1/messages", data=STREAM_BODY, headers={"x-api-key": gw.key}) as r,
    ):
        assert r.status == 200
        return await r.read()


async def test_a_stream_that_outlives_the_ttl_keeps_its_reservation_and_is_charged_once(
    short_ttl: Gateway, fake: FakeAnthropic
) -> None:
    gw = short_ttl
    gate = gw.server.app.services.budgets
    worst_stream = gate.worst_case_micros(
        "anthropic", "claude-haiku-4-5-20251001", len(STREAM_BODY), 64
    )
    worst_plain = gate.worst_case_micros("anthropic", "claude-haiku-4-5-20251001", len(BODY), 64)
    # Room for the stream's reservation, or for one plain call, never for both.
    budget = await add_budget(
        gw,
        0,
        id="T" * 26,
        scope="principal",
        target="alice",
        window="month",
        limit_micros=worst_stream + worst_plain - 1,
        on_breach="block",
    )
    # About 8 s of stream: eight times the reservation TTL.
    fake.set_default(
        Scenario(Reply([TextBlock("a b c d e f g h", chunks=8)]), Fault(event_delay=0.6))
    )
    long = asyncio.create_task(stream(gw))
    await asyncio.sleep(3.5 * TTL_S)
    assert not long.done()
    # The stream's reservation still holds: the plain call does not fit beside it.
    status, _, body = await post(gw, gw.key)
    assert status == 402, body
    assert b"message_stop" in await long
    counter = (budget.id, window_bounds("month", int(time.time() * 1000))[0])
    for _ in range(100):  # settling on Redis runs just after the response
        if await gate.counters.settled_amount(counter) == CALL_MICROS:
            break
        await asyncio.sleep(0.02)
    assert await gate.counters.settled_amount(counter) == CALL_MICROS  # charged, once
    await asyncio.sleep(3 * TTL_S)  # polls and reclaims run on: nothing changes
    assert await gate.counters.settled_amount(counter) == CALL_MICROS
    assert (await post(gw, gw.key))[0] == 200  # the reservation was released once
