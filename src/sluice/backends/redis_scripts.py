"""The Lua scripts of the Redis backend: each runs atomically inside Redis.

Keys (prefix ``sluice:``): ``b:{budget}:{window}:s`` settled micro-USD, ``…:r`` reserved;
``res:{request}`` a hash of what a request reserved; ``resz`` a sorted set of reservations by
deadline (a running request pushes its deadline on; reclaimed when a replica dies before
settling, the hash then kept a day, marked ``expired``, so a late settle still adds the cost);
``done:{request}`` marks a settled request for a day, so settlement is idempotent. Scripts
touch keys named inside the reservation hash, so this needs a single Redis (not Redis Cluster).

Rate limits: ``rl:{key}:rpm|tpm:{minute}``, ``rl:{key}:rpd:{day}`` and ``rl:{key}:conc`` (a
sorted set of concurrency leases by deadline).
"""

RESERVE = """
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

SETTLE = """
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

RECLAIM = """
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

RATE_ACQUIRE = """
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

RATE_RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""
