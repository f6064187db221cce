"""An unreachable Redis is one backend-level error, whichever store asked: governance decides
what it means (``redis_outage:``) and never sees a redis-py type."""

from __future__ import annotations

import socket

import pytest

from sluice.backends.factory import build_backend
from sluice.backends.protocols import Ask, BackendUnavailable, Lease
from sluice.config.models import SluiceConfig
from sluice.config.vk import RateLimits
from sluice.core.clock import SystemClock
from sluice.errors import ToolNotAllowed


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
    shared = build_backend(SluiceConfig(redis="redis://127.0.0.1:6379/5"), SystemClock())
    assert shared.counters.sync is None and shared.rates.sync is None and shared.shared
    await shared.close()
