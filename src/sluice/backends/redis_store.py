"""Stores shared by replicas, in Redis, with no check-then-set races: each counting step is one
Lua script (``redis_scripts``), so Redis runs it atomically.

Every call that fails to reach Redis raises ``BackendUnavailable`` (its cause: the client's
error); nothing above this module sees a redis-py type.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sluice.backends import redis_scripts
from sluice.backends.protocols import (
    LEASE_TTL_MS,
    VERDICT_TTL_S,
    Ask,
    BackendUnavailable,
    CounterKey,
    Granted,
    Lease,
    Refusal,
)
from sluice.backends.redis_pipe import AutoPipeline
from sluice.config.vk import RateLimits
from sluice.errors import GatewayError, ToolNotAllowed

PREFIX = "sluice:"
DONE_TTL_S = 86_400
CLAIM_TTL_S = 40 * 86_400

# What a Redis call raises when Redis is down, slow or half-reachable.
_UNREACHABLE: tuple[type[Exception], ...] = (RedisError, OSError)

T = TypeVar("T")


async def reach(call: Awaitable[T]) -> T:
    """Await a Redis call; an unreachable Redis becomes ``BackendUnavailable``."""
    try:
        return await call
    except _UNREACHABLE as exc:
        raise BackendUnavailable(f"redis: {exc}") from exc


def connect(url: str, max_connections: int = 64) -> Redis:
    # A bounded pool that waits for a free connection rather than failing under a burst.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2.0,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )
    return Redis(connection_pool=pool)


def _settled_key(counter: CounterKey) -> str:
    return f"{PREFIX}b:{counter[0]}:{counter[1]}:s"


def _reserved_key(counter: CounterKey) -> str:
    return f"{PREFIX}b:{counter[0]}:{counter[1]}:r"


class RedisCounters:
    sync = None  # remote: every step is a round trip

    def __init__(self, client: Redis, pipe: AutoPipeline) -> None:
        self._redis = client
        self._pipe = pipe
        self._reserve = client.register_script(redis_scripts.RESERVE)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._reclaim = client.register_script(redis_scripts.RECLAIM)

    async def seeded(self, counter: CounterKey) -> bool:
        return bool(await reach(self._redis.exists(_settled_key(counter))))

    async def seed(self, counter: CounterKey, spent: int) -> None:
        await reach(self._redis.set(_settled_key(counter), spent, nx=True))

    async def settled_amount(self, counter: CounterKey) -> int:
        value = await reach(self._redis.get(_settled_key(counter)))
        return int(value) if value is not None else 0

    async def reserved_amount(self, counter: CounterKey) -> int:
        value = await reach(self._redis.get(_reserved_key(counter)))
        return int(value) if value is not None else 0

    async def reserve(
        self, request_id: str, asks: list[Ask], deadline_ms: int
    ) -> Refusal | Granted:
        if not asks:
            return Granted(())
        amount = asks[0].amount  # one request reserves the same worst case everywhere
        keys: list[Any] = []
        for ask in asks:
            keys += [_settled_key(ask.counter), _reserved_key(ask.counter)]
        keys += [f"{PREFIX}res:{request_id}", f"{PREFIX}resz"]
        args: list[Any] = [len(asks), amount]
        args += [ask.limit if ask.limit is not None else -1 for ask in asks]
        args += [deadline_ms, request_id]
        index, used, *settled = await reach(self._pipe.script(self._reserve, keys, args))
        if int(index) == 0:
            return Granted(tuple(int(v) for v in settled))
        return Refusal(asks[int(index) - 1].counter, int(used))

    async def settle(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        keys = [f"{PREFIX}res:{request_id}", f"{PREFIX}resz", f"{PREFIX}done:{request_id}"]
        args = [actual, request_id, DONE_TTL_S]
        after = await reach(self._pipe.script(self._settle, keys, args))
        return [int(v) for v in after]

    async def extend(self, request_id: str, deadline_ms: int) -> None:
        # XX: only a reservation still open (a reclaimed one stays reclaimed).
        await reach(self._redis.zadd(f"{PREFIX}resz", {request_id: deadline_ms}, xx=True))

    async def reclaim(self, now_ms: int) -> int:
        args: list[Any] = [now_ms, f"{PREFIX}res:", DONE_TTL_S]
        return int(await reach(self._reclaim(keys=[f"{PREFIX}resz"], args=args)))

    async def claim_once(self, marker: str) -> bool:
        key = f"{PREFIX}once:{marker}"
        return bool(await reach(self._redis.set(key, 1, nx=True, ex=CLAIM_TTL_S)))


class RedisRateStore:
    """Rate-limit counters shared by replicas; each step one atomic script."""

    sync = None

    def __init__(self, client: Redis, pipe: AutoPipeline) -> None:
        self._pipe = pipe
        self._acquire = client.register_script(redis_scripts.RATE_ACQUIRE)
        self._release = client.register_script(redis_scripts.RATE_RELEASE)

    @staticmethod
    def _keys(lease: Lease, day: int) -> list[Any]:
        base = f"{PREFIX}rl:{lease.key_id}:"
        return [
            f"{base}rpm:{lease.minute}",
            f"{base}rpd:{day}",
            f"{base}tpm:{lease.minute}",
            f"{base}conc",
        ]

    async def acquire(self, lease: Lease, day: int, limits: RateLimits, now_ms: int) -> str | None:
        args: list[Any] = [
            limits.rpm or 0,
            limits.rpd or 0,
            limits.tpm or 0,
            limits.max_concurrent or 0,
            lease.tokens,
            lease.lease_id,
            now_ms,
            now_ms + LEASE_TTL_MS,
        ]
        refused = await reach(self._pipe.script(self._acquire, self._keys(lease, day), args))
        text = refused.decode() if isinstance(refused, bytes) else str(refused or "")
        return text or None

    async def release(self, lease: Lease, actual_tokens: int) -> None:
        base = f"{PREFIX}rl:{lease.key_id}:"
        keys = [f"{base}tpm:{lease.minute}", f"{base}conc"]
        args = [actual_tokens - lease.tokens, lease.lease_id]
        await reach(self._pipe.script(self._release, keys, args))


class RedisVerdicts:
    """Shared by replicas: Claude Code's retry is refused whichever replica it reaches."""

    def __init__(self, client: Redis, pipe: AutoPipeline, ttl_s: float = VERDICT_TTL_S) -> None:
        self._redis = client
        self._pipe = pipe
        self._ttl_ms = int(ttl_s * 1000)

    @staticmethod
    def _key(key_id: str, fingerprint: bytes) -> str:
        return f"{PREFIX}v:{key_id}:{fingerprint.hex()}"

    async def any_for(self, key_id: str) -> bool:
        return bool(await reach(self._pipe.execute("EXISTS", f"{PREFIX}v:any:{key_id}")))

    async def put(self, key_id: str, fingerprint: bytes, verdict: GatewayError) -> None:
        record = {"message": verdict.message, "meta": verdict.meta, "tips": verdict.tips}
        key = self._key(key_id, fingerprint)
        await reach(self._redis.set(key, orjson.dumps(record), px=self._ttl_ms))
        await reach(self._redis.set(f"{PREFIX}v:any:{key_id}", 1, px=self._ttl_ms))

    async def get(self, key_id: str, fingerprint: bytes) -> GatewayError | None:
        raw = await reach(self._pipe.execute("GET", self._key(key_id, fingerprint)))
        if raw is None:
            return None
        record = orjson.loads(raw)
        return ToolNotAllowed(record["message"], meta=record["meta"], tips=record["tips"])
