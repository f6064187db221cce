"""CPU the counters backend costs a request, in-process: memory vs Redis.

One simulated request does what the gateway does with a rate limit and two budgets on:
rate-limit acquire, budget reserve (both before dispatch), then budget settle and rate-limit
release (spawned together after the response, as the handler does). ``--verdicts`` adds the
verdict lookup of a non-streaming request. Reported: process CPU (µs) and wall time per
request at ``c`` requests at a time, and Redis round trips per request (socket writes).
Redis's own CPU is not counted: it is another process.

    PYTHONPATH=$PWD/src .venv/bin/python bench/redis_roundtrips.py [--requests 5000]
        [--concurrency 1 16] [--verdicts]

Runs against the current tree (``sluice.backends``) or, for a before/after, the tree before
it (``sluice.store.redis_counters``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import redis
import uvloop

from sluice.config.vk import RateLimits

REDIS_URL = "redis://127.0.0.1:6379/8"  # a database of its own, flushed
SENT = [0]  # writes to Redis sockets: round trips (a pipeline is one)


def _count_sends() -> None:
    from redis.asyncio.connection import AbstractConnection

    send = AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        SENT[0] += 1
        await send(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


class _Clock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def _stores(kind: str) -> tuple[Any, Any, Any, Any]:
    """(counters, rate store, verdicts, closer) for ``kind``, on either tree."""
    try:
        from sluice.backends.factory import build_backend
        from sluice.config.models import SluiceConfig

        cfg = SluiceConfig.model_validate({"redis": REDIS_URL} if kind == "redis" else {})
        backend = build_backend(cfg, _Clock())
        return backend.counters, backend.rates, backend.verdicts, backend.close
    except ImportError:
        pass
    from sluice.governance.counters import MemoryCounters  # type: ignore[import-not-found]
    from sluice.governance.rate_limits import MemoryRateStore  # type: ignore[import-not-found]
    from sluice.governance.verdicts import RedisVerdicts, VerdictCache
    from sluice.store.redis_counters import (  # type: ignore[import-not-found]
        RedisCounters,
        RedisRateStore,
    )

    if kind == "memory":
        counters = MemoryCounters()
        return counters, MemoryRateStore(), VerdictCache(_Clock()), counters.close
    rc = RedisCounters.from_url(REDIS_URL)
    return rc, RedisRateStore(rc), RedisVerdicts(rc.client), rc.close


def _sync(store: Any, name: str) -> Any:
    """The in-process twin, found either way (a ``sync`` capability or the old isinstance)."""
    sync = getattr(store, "sync", None)
    if sync is None and hasattr(store, name):
        sync = store
    return sync if sync is not None and hasattr(sync, name) else None


try:  # resolved once: a failed import per request would cost more than the memory backend
    from sluice.backends.protocols import Ask, Lease
except ImportError:
    from sluice.governance.counters import Ask  # type: ignore[import-not-found,no-redef]
    from sluice.governance.rate_limits import Lease  # type: ignore[attr-defined,no-redef]


async def _request(stores: tuple[Any, Any, Any, Any], i: int, verdicts: bool) -> None:
    counters, rates, verdict_store, _ = stores
    now = _Clock().now_ms()
    rid = f"req-{i}-{now}"
    lease = Lease("key-1", rid, now // 60_000 * 60_000, 1000, True)
    limits = RateLimits(rpm=10**9, tpm=10**12, max_concurrent=10**6)
    assert await rates.acquire(lease, now // 86_400_000, limits, now) is None
    if verdicts:
        await verdict_store.any_for("key-1")
    asks = [Ask(("budget-a", 0), 50, 10**15), Ask(("budget-b", 0), 50, None)]
    fast_counters, fast_rates = _sync(counters, "reserve_now"), _sync(rates, "release_now")
    if fast_counters is not None:
        fast_counters.reserve_now(rid, asks, now + 900_000)
        fast_counters.settle_now(rid, 40, now)
        fast_rates.release_now(lease, 900)
        return
    await counters.reserve(rid, asks, now + 900_000)
    # The handler spawns both after the response: they start in the same loop turn.
    await asyncio.gather(counters.settle(rid, 40, now), rates.release(lease, 900))


async def _run(kind: str, requests: int, concurrency: int, verdicts: bool) -> dict[str, float]:
    stores = _stores(kind)
    info = redis.Redis.from_url(REDIS_URL)
    info.flushdb()
    for i in range(200):  # warm up: scripts loaded, pool filled
        await _request(stores, -i - 1, verdicts)
    SENT[0] = 0
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:
            await _request(stores, i, verdicts)

    before, wall = os.times(), time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    after, wall = os.times(), time.perf_counter() - wall
    user, system = after.user - before.user, after.system - before.system
    calls = SENT[0]
    await stores[3]()
    info.flushdb()
    info.close()
    return {
        "cpu_us": (user + system) / requests * 1e6,
        "sys_us": system / requests * 1e6,
        "wall_us": wall / requests * 1e6,
        "commands": calls / requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--verdicts", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _count_sends()
    hiredis = redis.utils.HIREDIS_AVAILABLE
    print(f"redis-py {redis.__version__}, hiredis {'on' if hiredis else 'off'}")
    for concurrency in args.concurrency:
        for kind in ("memory", "redis"):
            runs = [
                uvloop.run(_run(kind, args.requests, concurrency, args.verdicts))
                for _ in range(args.rounds)
            ]
            best = min(runs, key=lambda r: r["cpu_us"])
            print(
                f"c={concurrency:<3} {kind:<6} cpu={best['cpu_us']:7.1f} µs/req "
                f"(sys {best['sys_us']:5.1f})  "
                f"wall={best['wall_us']:7.1f} µs/req  redis round trips/req={best['commands']:.2f}"
                f"  (best of {args.rounds} by CPU)"
            )


if __name__ == "__main__":
    main()
