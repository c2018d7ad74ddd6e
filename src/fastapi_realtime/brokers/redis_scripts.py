"""The Lua scripts of the Redis broker: each is one atomic step on one channel's keys.

Every script takes the current time in milliseconds as an argument; ``0`` means "ask Redis"
(``TIME``), so that all nodes share one clock. Expiry is kept as times in the metadata and the
presence ZSET and checked by the scripts, and backed by key TTLs so Redis drops what nobody
touches any more. See :mod:`.redis_wire` for the key layout.
"""

from __future__ import annotations

_NOW = """
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('time')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Loads the stream metadata into epoch/top, starting a new epoch (and dropping the stream) when
# it is missing or expired, and dropping expired history. Needs ARGV[2]: a fresh epoch.
_LOAD_STREAM = """
local meta = redis.call('hmget', KEYS[1], 'e', 's', 'x', 'hx')
local epoch, top, fresh = meta[1], tonumber(meta[2]), false
if (not epoch) or tonumber(meta[3]) <= now then
  epoch, top, fresh = ARGV[2], 0, true
  redis.call('del', KEYS[1], KEYS[2])
elseif meta[4] and tonumber(meta[4]) <= now then
  redis.call('del', KEYS[2])
end
"""

PUBLISH = (
    """
-- KEYS: meta, stream, pubsub channel
-- ARGV: now, new epoch, publication, history size, history ttl ms, meta ttl ms, publish command
"""
    + _NOW
    + _LOAD_STREAM
    + """
local history_ttl, meta_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
top = top + 1
local id = string.format('%d-0', top)
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[4], id, 'd', ARGV[3])
redis.call('hset', KEYS[1], 'e', epoch, 's', top, 'x', now + meta_ttl, 'hx', now + history_ttl)
redis.call('pexpire', KEYS[1], meta_ttl)
redis.call('pexpire', KEYS[2], history_ttl)
redis.call(ARGV[7], KEYS[3], string.format('p%d:', top) .. ARGV[3])
return {top, epoch}
"""
)

HISTORY = (
    """
-- KEYS: meta, stream
-- ARGV: now, new epoch, meta ttl ms, since offset (-1: none), limit (-1: all), reverse (1/0),
--       may create a placeholder (1/0)
-- Returns {top, epoch, entries, created (1/0)}, or {-1} when a placeholder was needed but not allowed.
"""
    + _NOW
    + _LOAD_STREAM
    + """
local meta_ttl = tonumber(ARGV[3])
if fresh then
  if ARGV[7] ~= '1' then
    return {-1}
  end
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0, 'x', now + meta_ttl)
  redis.call('pexpire', KEYS[1], meta_ttl)
elseif top == 0 then
  -- a placeholder read again: keep it at least meta_ttl from now
  if tonumber(redis.call('hget', KEYS[1], 'x')) < now + meta_ttl then
    redis.call('hset', KEYS[1], 'x', now + meta_ttl)
  end
  if redis.call('pttl', KEYS[1]) < meta_ttl then
    redis.call('pexpire', KEYS[1], meta_ttl)
  end
end
local created = fresh and 1 or 0
local since, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
if limit == 0 then
  return {top, epoch, {}, created}
end
local count = {}
if limit > 0 then
  count = {'COUNT', limit}
end
local entries
if ARGV[6] == '1' then
  local upper = '+'
  if since >= 0 then
    if since <= 1 then
      return {top, epoch, {}, created}
    end
    upper = string.format('%d-0', since - 1)
  end
  entries = redis.call('xrevrange', KEYS[2], upper, '-', unpack(count))
else
  local lower = '-'
  if since >= 0 then
    lower = string.format('%d-0', since + 1)
  end
  entries = redis.call('xrange', KEYS[2], lower, '+', unpack(count))
end
return {top, epoch, entries, created}
"""
)

ADD_PRESENCE = (
    """
-- KEYS: presence zset, presence info hash
-- ARGV: now, ttl ms, client id, encoded info
"""
    + _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('zadd', KEYS[1], now + ttl, ARGV[3])
redis.call('hset', KEYS[2], ARGV[3], ARGV[4])
for _, key in ipairs(KEYS) do
  if redis.call('pttl', key) < ttl then
    redis.call('pexpire', key, ttl)
  end
end
return 1
"""
)

REMOVE_PRESENCE = """
-- KEYS: presence zset, presence info hash; ARGV: client id
redis.call('zrem', KEYS[1], ARGV[1])
redis.call('hdel', KEYS[2], ARGV[1])
return 1
"""

PRESENCE = (
    """
-- KEYS: presence zset, presence info hash; ARGV: now
-- Prunes expired entries, then returns the info hash (client id, info, ...).
"""
    + _NOW
    + """
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', now)
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[1], '-inf', now)
  for i = 1, #expired, 1000 do
    redis.call('hdel', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
  end
end
return redis.call('hgetall', KEYS[2])
"""
)
