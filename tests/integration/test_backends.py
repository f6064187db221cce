"""The backend factory: what each backend declares, one error type for an unreachable Redis
(governance decides what it means, ``redis_outage:``, and never sees a redis-py type), and
settles that share a round trip."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.asyncio import Redis

from sluice.backends.factory import build_backend
from sluice.backends.protocols import Ask, BackendUnavailable, Lease
from sluice.base.clock import SystemClock
from sluice.config.models import SluiceConfig
from sluice.config.vk import RateLimits
from sluice.errors import ToolNotAllowed

from services import backend_of

REDIS_URL = "redis://127.0.0.1:6379/5"  # a database of its own, flushed per test


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


async def test_every_store_reports_an_unreachable_redis_as_backend_unavailable() -> None:
    cfg = SluiceConfig.model_validate({"redis": f"redis://127.0.0.1:{_closed_port()}/0"})
    backend = build_backend(cfg, SystemClock())
    lease = Lease("key-1", "req-1", 0, 10, True)
    calls = [
        backend.counters.reserve("req-1", [Ask(("b", 0), 1, 10)], 1),
        backend.counters.settle("req-1", 1, 0),
        backend.counters.seeded(("b", 0)),
        backend.counters.claim_once("m"),
        backend.rates.acquire(lease, 0, RateLimits(rpm=1), 0),
        backend.rates.release(lease, 1),
        backend.verdicts.any_for("key-1"),
        backend.verdicts.put("key-1", b"x", ToolNotAllowed("no")),
        backend.verdicts.get("key-1", b"x"),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailable) as raised:
            await call
        assert isinstance(raised.value.__cause__, Exception)
    assert await backend.ping() is False
    await backend.close()


async def test_memory_backend_has_the_sync_capability_and_redis_has_not() -> None:
    memory = build_backend(SluiceConfig(), SystemClock())
    assert memory.counters.sync is memory.counters and memory.rates.sync is memory.rates
    assert not memory.shared and await memory.ping() is None
    shared = build_backend(SluiceConfig(redis=REDIS_URL), SystemClock())
    assert shared.counters.sync is None and shared.rates.sync is None and shared.shared
    await shared.close()


async def test_settles_and_releases_of_one_loop_turn_share_a_round_trip() -> None:
    """Batched: each script still runs (once), replies reach their callers, and a Redis that
    lost its scripts (restarted) gets them loaded again."""
    async with backend_of("redis", REDIS_URL) as backend:
        limits = RateLimits(tpm=1000, max_concurrent=50)
        leases = [Lease("key-1", f"req-{n}", 0, 10, True) for n in range(50)]
        for n, lease in enumerate(leases):
            assert await backend.rates.acquire(lease, 0, limits, 1) is None
            await backend.counters.reserve(f"req-{n}", [Ask(("b", 0), 10, None)], 10_000)
        admin = Redis.from_url(REDIS_URL)
        await admin.script_flush()
        await admin.aclose()
        results = await asyncio.gather(
            *[backend.counters.settle(f"req-{n}", 1, 0) for n in range(50)],
            *[backend.rates.release(lease, 1) for lease in leases],
        )
        assert sorted(r[0] for r in results[:50] if r) == list(range(1, 51))
        assert await backend.counters.settle("req-0", 1, 0) == []  # settled once
        assert await backend.counters.settled_amount(("b", 0)) == 50
        # All 50 slots and all but 50 tokens are free again.
        fits = Lease("key-1", "req-x", 0, 950, True)
        assert await backend.rates.acquire(fits, 0, limits, 2) is None
        assert await backend.rates.acquire(Lease("key-1", "y", 0, 1, True), 0, limits, 2) == "tpm"
