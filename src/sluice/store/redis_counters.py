"""Budget counters shared by replicas, in Redis, with no check-then-set races: each operation
is one Lua script, so Redis runs it atomically.

Keys (prefix ``sluice:``): ``b:{budget}:{window}:s`` settled micro-USD, ``…:r`` reserved;
``res:{request}`` a hash of what a request reserved; ``resz`` a sorted set of reservations by
deadline (a running request pushes its deadline on; reclaimed when a replica dies before
settling, the hash then kept a day, marked ``expired``, so a late settle still adds the cost);
``done:{request}`` marks a settled request for a day, so settlement is idempotent. Scripts
touch keys named inside the reservation hash, so this needs a single Redis (not Redis Cluster).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from sluice.config.vk import RateLimits
from sluice.governance.counters import Ask, CounterKey, Granted, Refusal
from sluice.governance.rate_limits import LEASE_TTL_MS, Lease

PREFIX = "sluice:"
DONE_TTL_S = 86_400

_RESERVE = """
local n = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
for i = 1, n do
  local limit = tonumber(ARGV[2 + i])
  if limit >= 0 then
    local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
      + tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if used + amount > limit then return {i, used} end
  end
end
local res = KEYS[2 * n + 1]
redis.call('HSET', res, 'amount', amount, 'n', n)
for i = 1, n do
  redis.call('INCRBY', KEYS[2 * i], amount)
  redis.call('HSET', res, 's' .. i, KEYS[2 * i - 1], 'r' .. i, KEYS[2 * i])
end
redis.call('ZADD', KEYS[2 * n + 2], ARGV[3 + n], ARGV[4 + n])
local out = {0, 0}
for i = 1, n do out[2 + i] = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0') end
return out
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n == 0 then return {} end
local amount = tonumber(redis.call('HGET', KEYS[1], 'amount'))
local live = redis.call('HEXISTS', KEYS[1], 'expired') == 0
local after = {}
for i = 1, n do
  if live then redis.call('DECRBY', redis.call('HGET', KEYS[1], 'r' .. i), amount) end
  after[i] = redis.call('INCRBY', redis.call('HGET', KEYS[1], 's' .. i), ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], 1, 'EX', ARGV[3])
return after
"""

_RECLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(ids) do
  local res = ARGV[2] .. id
  local n = tonumber(redis.call('HGET', res, 'n') or '0')
  local amount = tonumber(redis.call('HGET', res, 'amount') or '0')
  for i = 1, n do redis.call('DECRBY', redis.call('HGET', res, 'r' .. i), amount) end
  if n > 0 then
    redis.call('HSET', res, 'expired', 1)
    redis.call('EXPIRE', res, ARGV[3])
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""


def _settled_key(counter: CounterKey) -> str:
    return f"{PREFIX}b:{counter[0]}:{counter[1]}:s"


def _reserved_key(counter: CounterKey) -> str:
    return f"{PREFIX}b:{counter[0]}:{counter[1]}:r"


class RedisCounters:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self._redis = client
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._reclaim = client.register_script(_RECLAIM)

    @classmethod
    def from_url(cls, url: str, max_connections: int = 64) -> RedisCounters:
        # A bounded pool that waits for a free connection rather than failing under a burst.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=2.0,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
        )
        return cls(Redis(connection_pool=pool))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def seeded(self, counter: CounterKey) -> bool:
        return bool(await self._redis.exists(_settled_key(counter)))

    async def seed(self, counter: CounterKey, spent: int) -> None:
        await self._redis.set(_settled_key(counter), spent, nx=True)

    async def settled_amount(self, counter: CounterKey) -> int:
        value = await self._redis.get(_settled_key(counter))
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
        index, used, *settled = await self._reserve(keys=keys, args=args)
        if int(index) == 0:
            return Granted(tuple(int(v) for v in settled))
        return Refusal(asks[int(index) - 1].counter, int(used))

    async def settle(self, request_id: str, actual: int, now_ms: int) -> list[int]:
        keys = [f"{PREFIX}res:{request_id}", f"{PREFIX}resz", f"{PREFIX}done:{request_id}"]
        after = await self._settle(keys=keys, args=[actual, request_id, DONE_TTL_S])
        return [int(v) for v in after]

    async def extend(self, request_id: str, deadline_ms: int) -> None:
        # XX: only a reservation still open (a reclaimed one stays reclaimed).
        await self._redis.zadd(f"{PREFIX}resz", {request_id: deadline_ms}, xx=True)

    async def reclaim(self, now_ms: int) -> int:
        args: list[Any] = [now_ms, f"{PREFIX}res:", DONE_TTL_S]
        return int(await self._reclaim(keys=[f"{PREFIX}resz"], args=args))

    async def claim_once(self, marker: str) -> bool:
        claimed = await self._redis.set(f"{PREFIX}once:{marker}", 1, nx=True, ex=40 * 86_400)
        return bool(claimed)

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


_RATE_ACQUIRE = """
local rpm, rpd = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm, conc = tonumber(ARGV[3]), tonumber(ARGV[4])
local est, now = tonumber(ARGV[5]), tonumber(ARGV[7])
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= conc then return 'max_concurrent' end
end
if rpm > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then return 'rpm' end
if rpd > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= rpd then return 'rpd' end
if tpm > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') + est > tpm then return 'tpm' end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 120000)
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 172800000)
redis.call('INCRBY', KEYS[3], est)
redis.call('PEXPIRE', KEYS[3], 120000)
if conc > 0 then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[6])
  redis.call('PEXPIRE', KEYS[4], 1800000)
end
return ''
"""

_RATE_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


class RedisRateStore:
    """Rate-limit counters shared by replicas; each step one atomic script."""

    def __init__(self, counters: RedisCounters) -> None:
        client = counters.client
        self._redis = client
        self._acquire = client.register_script(_RATE_ACQUIRE)
        self._release = client.register_script(_RATE_RELEASE)

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
        refused = await self._acquire(keys=self._keys(lease, day), args=args)
        text = refused.decode() if isinstance(refused, bytes) else str(refused or "")
        return text or None

    async def release(self, lease: Lease, actual_tokens: int) -> None:
        base = f"{PREFIX}rl:{lease.key_id}:"
        await self._release(
            keys=[f"{base}tpm:{lease.minute}", f"{base}conc"],
            args=[actual_tokens - lease.tokens, lease.lease_id],
        )
