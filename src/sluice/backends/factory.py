"""One factory for the three stores: all in memory, or all in one Redis (``redis:``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sluice.backends.memory import MemoryCounters, MemoryRateStore, MemoryVerdicts
from sluice.backends.protocols import BudgetCounters, Clock, RateStore, VerdictStore
from sluice.config.models import SluiceConfig


async def _no_ping() -> bool | None:
    return None


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Backend:
    counters: BudgetCounters
    rates: RateStore
    verdicts: VerdictStore
    # True/False: whether the shared store answers; None: nothing shared is configured.
    ping: Callable[[], Awaitable[bool | None]] = _no_ping
    close: Callable[[], Awaitable[None]] = _nothing

    @property
    def shared(self) -> bool:
        """Whether the stores are shared by replicas (and so may be unreachable)."""
        return self.counters.sync is None


def memory_backend(clock: Clock) -> Backend:
    return Backend(MemoryCounters(), MemoryRateStore(), MemoryVerdicts(clock))


def redis_backend(url: str) -> Backend:
    # Imported here: a gateway without redis: never loads the client.
    from sluice.backends.redis_pipe import AutoPipeline
    from sluice.backends.redis_store import (
        RedisCounters,
        RedisRateStore,
        RedisVerdicts,
        connect,
    )

    client = connect(url)
    # The request path's commands share round trips (and one connection).
    pipe = AutoPipeline(client.connection_pool)

    async def ping() -> bool | None:
        try:
            return bool(await client.ping())
        except Exception:
            return False

    async def close() -> None:
        await pipe.aclose()
        await client.aclose(close_connection_pool=True)

    return Backend(
        RedisCounters(client, pipe),
        RedisRateStore(client, pipe),
        RedisVerdicts(client, pipe),
        ping,
        close,
    )


def build_backend(cfg: SluiceConfig, clock: Clock) -> Backend:
    """Redis when ``redis:`` is set (shared by replicas and workers), else in-process."""
    return redis_backend(cfg.redis) if cfg.redis else memory_backend(clock)
