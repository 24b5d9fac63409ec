"""The Lua scripts of the Redis session store (:mod:`chat_session.redisstore`, where the
key layout is drawn).

Each script is one atomic step that touches the keys of one hash tag only, so it runs on
one Redis, on Sentinel and on a Redis Cluster alike.
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "DETACH",
    "FENCE",
    "JOIN",
    "LEAVE",
    "OPEN",
    "REATTACH",
    "TAKE",
    "USER_SESSIONS",
]

# Open (or refresh) a session; returns the email it is bound to, or '' (nothing changed)
# when the session has ended (its tombstone) or another connection holds it (or none: it is
# detached). A session bound to another email is left exactly as it is. KEYS: session hash,
# session rooms, its group's expiry index, its tombstone. ARGV: email, token hash, sid,
# gateway, conn, expires, backstop TTL, session id.
OPEN = """
if redis.call('EXISTS', KEYS[4]) == 1 then return '' end
local bound = redis.call('HGET', KEYS[1], 'email')
if bound and bound ~= ARGV[1] then return bound end
if bound and redis.call('HGET', KEYS[1], 'conn') ~= ARGV[5] then return '' end
redis.call('HSETNX', KEYS[1], 'email', ARGV[1])
redis.call('HSETNX', KEYS[1], 'token_hash', ARGV[2])
redis.call('HSETNX', KEYS[1], 'sid', ARGV[3])
redis.call('HSET', KEYS[1], 'gateway', ARGV[4], 'conn', ARGV[5], 'state', 'attached')
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[8])
return ARGV[1]
"""

# Add and/or remove one of a user's sessions; returns how many there are. KEYS: the user's
# sessions set. ARGV: session to add ('' for none), session to remove ('' for none), TTL.
USER_SESSIONS = """
if ARGV[1] ~= '' then redis.call('SADD', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('SREM', KEYS[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('SCARD', KEYS[1])
"""

# The session's side of a numbered join or leave: applied only when the asking connection
# holds the session and its number is above the last one applied to that room; returns 1
# (applied) or 0 (nothing changed). KEYS: session hash, session rooms, session ops (room ->
# last number). ARGV: conn, number, room, join position ('' for a leave), backstop TTL.
FENCE = """
if redis.call('HGET', KEYS[1], 'conn') ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) <= tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or '0') then return 0 end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[5])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], ARGV[3])
else
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
return 1
"""

# Count a session in a room: the user enters the room's users on their first connection in
# it. KEYS: the room's users, the room's clock, the user's connections in it. ARGV: session
# id, email, page size. Returns {first connection, user count, first page WITHSCORES}.
JOIN = """
local added = redis.call('SADD', KEYS[3], ARGV[1])
local first = 0
if added == 1 and redis.call('SCARD', KEYS[3]) == 1 then
  first = 1
  if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[2])
  end
end
return {first, redis.call('ZCARD', KEYS[1]),
        redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')}
"""

# KEYS: the room's users, the user's connections in it, the room's clock (dropped with the
# room's last user, so an emptied room leaves no key). ARGV: session id, email, page size.
LEAVE = """
local removed = redis.call('SREM', KEYS[2], ARGV[1])
local last = 0
if removed == 1 and redis.call('SCARD', KEYS[2]) == 0 then
  last = 1
  redis.call('ZREM', KEYS[1], ARGV[2])
end
local count = redis.call('ZCARD', KEYS[1])
if count == 0 then redis.call('DEL', KEYS[3]) end
if count > tonumber(ARGV[3]) then return {last, count, {}} end
return {last, count, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""

# A connection dropped: detach its session (held by no connection, resumable until the new
# expiry) only if that connection still holds it; 1 if it did. KEYS: session hash, expiry
# index. ARGV: conn, expires, session id.
DETACH = """
if redis.call('HGET', KEYS[1], 'conn') ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'gateway', '', 'conn', '', 'state', 'detached')
return 1
"""

# Reattach a session only if it has not expired (so a reaped session stays dead): extend
# its expiry and record where it lives now (the new connection numbers its joins and
# leaves from 1 again). KEYS: expiry index, session hash, session ops.
# ARGV: session id, now, new expiry, gateway, conn.
REATTACH = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[2], 'gateway', ARGV[4], 'conn', ARGV[5], 'state', 'attached')
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
"""

# A user's shared token bucket: KEYS[1] hash {tokens, ts}; ARGV rate, burst, now_ms, want.
# Returns {granted, retry_after_ms}. Concurrent takes may arrive with their ``now`` out of
# order (each was read before waiting for a connection): ``ts`` never goes back, or the
# time between the two would be refilled twice.
TAKE = """
local rate, burst, now, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', math.max(ts, now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted == 0 then wait = math.ceil((1 - tokens) * 1000 / rate) end
return {granted, wait}
"""

# The reaper's claim: remove an expired session from the index; 1 means "it is ours".
CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
