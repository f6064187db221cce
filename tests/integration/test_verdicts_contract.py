"""One contract suite for the remembered tool verdicts: in-process and Redis (a real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sluice.backends.memory import MemoryVerdicts
from sluice.backends.protocols import VerdictStore
from sluice.backends.redis_pipe import AutoPipeline
from sluice.backends.redis_store import RedisVerdicts, connect
from sluice.base.clock import SystemClock
from sluice.errors import ToolNotAllowed

from services import backend_of, ensure_redis

REDIS_URL = "redis://127.0.0.1:6379/6"  # a database of its own, flushed per test
FP = b"\x01" * 32
OTHER = b"\x02" * 32


def verdict() -> ToolNotAllowed:
    return ToolNotAllowed(
        "Tool 'Bash' is not allowed for this key.",
        meta={"tool": "Bash", "rule": "deny:Bash"},
        tips=["Ask an admin."],
    )


@pytest.fixture(params=["memory", "redis"])
async def verdicts(request: pytest.FixtureRequest) -> AsyncIterator[VerdictStore]:
    async with backend_of(request.param, REDIS_URL) as backend:
        yield backend.verdicts


async def test_a_put_verdict_is_found_for_its_key_and_body_only(verdicts: VerdictStore) -> None:
    assert not await verdicts.any_for("key-1")
    assert await verdicts.get("key-1", FP) is None
    await verdicts.put("key-1", FP, verdict())
    assert await verdicts.any_for("key-1")
    assert not await verdicts.any_for("key-2")
    assert await verdicts.get("key-1", OTHER) is None
    assert await verdicts.get("key-2", FP) is None
    found = await verdicts.get("key-1", FP)
    assert isinstance(found, ToolNotAllowed)
    expected = verdict()
    assert (found.message, found.meta, found.tips) == (
        expected.message,
        expected.meta,
        expected.tips,
    )


async def test_each_lookup_is_a_fresh_error(verdicts: VerdictStore) -> None:
    """One exception instance must not be raised twice (its traceback would grow)."""
    await verdicts.put("key-1", FP, verdict())
    first, second = await verdicts.get("key-1", FP), await verdicts.get("key-1", FP)
    assert first is not None and second is not None and first is not second


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_verdicts_expire(kind: str) -> None:
    if kind == "memory":
        await _expires(MemoryVerdicts(SystemClock(), ttl_s=0.2))
        return
    ensure_redis()
    client = connect(REDIS_URL)
    pipe = AutoPipeline(client.connection_pool)
    try:
        await _expires(RedisVerdicts(client, pipe, ttl_s=0.2))
    finally:
        await pipe.aclose()
        await client.aclose(close_connection_pool=True)


async def _expires(store: VerdictStore) -> None:
    await store.put("key-exp", FP, verdict())
    assert await store.any_for("key-exp") and await store.get("key-exp", FP) is not None
    await asyncio.sleep(0.3)
    assert not await store.any_for("key-exp")
    assert await store.get("key-exp", FP) is None
