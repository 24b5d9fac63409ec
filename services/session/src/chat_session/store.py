"""Where sessions and room presence live: the store interface and its Redis implementation.

Redis layout (``P`` = key prefix, ``{..}`` = cluster hash tag, ``G`` = the session's slot
group, ``crc32(S) % 16`` in hex)::

    P:room:{R}:users               ZSET  email -> join order (user-level presence)
    P:room:{R}:clock               STRING counter giving the join order
    P:room:{R}:conns:<email>       SET   session ids of that user in the room
    P:session:{P:sG}:S             HASH  email, gateway, conn, token_hash (sha256 of the token), sid, state
    P:session:{P:sG}:S:rooms       HASH  room -> join position (last seq in the join's history)
    P:sessions:{P:sG}:expiry       ZSET  session id -> when it expires (epoch ms)
    P:user:{E}:sessions            SET   the user's live session ids
    P:rate:{E}                     HASH  the user's shared token bucket

Every script and multi-key command touches keys of one hash tag only, so the same layout
runs on one Redis, on Sentinel and on Redis Cluster. A session's keys share their slot with
the expiry index of its group: the 16 groups spread the index over the cluster's primaries,
and the reaper walks each group's index.

A session is *attached* while a gateway heartbeats it (expiry = last heartbeat +
heartbeat TTL + resume window) and *detached* once its connection dropped (expiry = drop +
resume window). Resuming moves the expiry forward; the reaper claims expired sessions with
an atomic ZREM, so each one's ``user_left`` goes out exactly once however many session
instances run. Session keys also carry a long Redis TTL as a backstop.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis, RedisCluster

from chat_common.schemas import ROOM_ID_PATTERN

__all__ = [
    "MemberPage",
    "PresenceChange",
    "RedisSessionStore",
    "SessionRecord",
    "SessionStore",
    "SessionView",
]

BACKSTOP_TTL_S = 24 * 3600
SLOT_GROUPS = 16
"""How many expiry indexes (and hash tags) sessions are spread over."""
_SCAN_COUNT = 500
_ROOM_ID = re.compile(ROOM_ID_PATTERN)

# Open (or refresh) a session; returns the email it is bound to. A session bound to another
# email is left exactly as it is. KEYS: session hash, session rooms, its group's expiry
# index. ARGV: email, token hash, sid, gateway, conn, expires, backstop TTL, session id.
_OPEN = """
local bound = redis.call('HGET', KEYS[1], 'email')
if bound and bound ~= ARGV[1] then return bound end
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
_USER_SESSIONS = """
if ARGV[1] ~= '' then redis.call('SADD', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('SREM', KEYS[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('SCARD', KEYS[1])
"""

_JOIN = """
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
_LEAVE = """
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

# Reattach a session only if it has not expired (so a reaped session stays dead): extend
# its expiry and record where it lives now. KEYS: expiry index, session hash.
# ARGV: session id, now, new expiry, gateway, conn.
_REATTACH = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[2], 'gateway', ARGV[4], 'conn', ARGV[5], 'state', 'attached')
  return 1
end
return 0
"""

# A user's shared token bucket: KEYS[1] hash {tokens, ts}; ARGV rate, burst, now_ms, want.
# Returns {granted, retry_after_ms}. Concurrent takes may arrive with their ``now`` out of
# order (each was read before waiting for a connection): ``ts`` never goes back, or the
# time between the two would be refilled twice.
_TAKE = """
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
_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class MemberPage:
    """Users of a room in join order, a page at a time."""

    users: list[str]
    count: int
    """How many users the room has."""
    next: int | None
    """Where the next page starts (``after`` of :meth:`SessionStore.members`), when more
    users follow this page."""


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """What a join or leave did to a room's presence."""

    changed: bool
    """The user entered (first connection in) or left (last connection out) the room."""
    page: MemberPage
    """The room after it: its count and its first ``page`` users (on a leave, only when
    they are all of them; else none)."""

    @property
    def complete(self) -> list[str] | None:
        """Every user of the room when they fit in the page, else ``None``."""
        return self.page.users if len(self.page.users) == self.page.count else None


def _page(count: int, flat: list[str]) -> MemberPage:
    """A page from a ``WITHSCORES`` reply (``[user, score, user, score, ...]``)."""
    users = [str(u) for u in flat[0::2]]
    more = count > len(users) and bool(users)
    return MemberPage(users, int(count), int(float(flat[-1])) if more else None)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    email: str
    token_hash: str
    sid: str
    gateway: str
    conn: str
    rooms: dict[str, int]


@dataclass(frozen=True, slots=True)
class SessionView:
    """What an operator may see of a session: no token hash, no connection key."""

    email: str
    sid: str
    state: str
    gateway: str
    rooms: dict[str, int]
    expires: int | None


class SessionStore(Protocol):
    """Sessions and presence, whatever holds them. Times are epoch milliseconds."""

    async def open(
        self,
        session_id: str,
        *,
        email: str,
        token_hash: str,
        sid: str,
        gateway: str,
        conn: str,
        expires: int,
    ) -> tuple[str, int]:
        """Create the session if new (or refresh it) in one step; returns the email it is
        bound to and, when that is ``email``, how many sessions the user has now (this one
        included; 0 otherwise)."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None: ...

    async def join(
        self, session_id: str, email: str, room_id: str, join_position: int, *, page: int
    ) -> PresenceChange:
        """Count the session in the room; the change carries the room's first ``page``
        users."""
        ...

    async def leave(
        self, session_id: str, email: str, room_id: str, *, page: int
    ) -> PresenceChange:
        """Take the session out of the room; the change carries the room's users when
        there are at most ``page``."""
        ...

    async def members(self, room_id: str, *, after: int | None, limit: int) -> MemberPage:
        """Up to ``limit`` users of the room in join order, from after ``after`` (a page's
        ``next``; ``None``: from the first)."""
        ...

    async def reattach(
        self, session_id: str, *, now: int, expires: int, gateway: str, conn: str
    ) -> bool:
        """Attach a live session to ``conn`` at ``gateway`` until ``expires``; ``False``
        (and nothing changed) when it has expired."""
        ...

    async def set_state(self, session_id: str, *, gateway: str, conn: str, state: str) -> None: ...

    async def known(self, session_ids: list[str]) -> list[bool]: ...

    async def set_expiry(self, session_ids: list[str], *, expires: int) -> None:
        """Move the expiry of the known ones among ``session_ids`` to ``expires`` (later for
        a gateway's heartbeat, sooner for a dropped connection); unknown ids are skipped."""
        ...

    async def expired(self, *, now: int, limit: int) -> list[str]: ...

    async def claim(self, session_id: str, *, now: int) -> bool: ...

    async def forget(self, session_id: str) -> None: ...

    async def count(self) -> int:
        """How many sessions the store holds."""
        ...

    async def take(
        self, email: str, *, want: int, rate: float, burst: float, now: int
    ) -> tuple[int, int]:
        """Lease up to ``want`` tokens of the user's bucket: (granted, retry after ms)."""
        ...

    async def track_user_sessions(
        self, email: str, *, add: str | None = None, remove: str | None = None
    ) -> int:
        """Add and/or remove one of the user's live sessions; returns how many there are
        (with neither, only counts them)."""
        ...

    async def ping(self) -> None: ...

    async def rooms(self, *, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """Up to ``limit`` rooms with users, as (room, user count) by room id; and whether
        there are more."""
        ...

    async def presence(
        self, room_id: str, *, limit: int, after: int | None = None
    ) -> tuple[list[tuple[str, list[str]]], MemberPage]:
        """A page of the room's users (as :meth:`members`) with each one's session ids."""
        ...

    async def view(self, session_id: str) -> SessionView | None: ...


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def _both(main: Awaitable[Any], other: Awaitable[Any]) -> Any:
    """Run two Redis calls side by side; ``main``'s result, or the first failure."""
    results = await asyncio.gather(main, other, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0]


def slot_group(session_id: str) -> int:
    """The slot group of a session: its keys and its expiry index share one hash tag."""
    return zlib.crc32(session_id.encode()) % SLOT_GROUPS


def now_ms() -> int:
    return int(time.time() * 1000)


class RedisSessionStore:
    """:class:`SessionStore` on Redis: one server (or Sentinel's primary) or a Redis Cluster,
    through a client with ``decode_responses=True``."""

    def __init__(self, redis: Redis | RedisCluster, *, prefix: str) -> None:
        self._r = redis
        self._p = prefix
        self._open = redis.register_script(_OPEN)
        self._join = redis.register_script(_JOIN)
        self._leave = redis.register_script(_LEAVE)
        self._reattach = redis.register_script(_REATTACH)
        self._claim = redis.register_script(_CLAIM)
        self._take = redis.register_script(_TAKE)
        self._user_set = redis.register_script(_USER_SESSIONS)

    def _room(self, room_id: str, part: str) -> str:
        return f"{self._p}:room:{{{room_id}}}:{part}"

    def _user_sessions(self, email: str) -> str:
        return f"{self._p}:user:{{{email}}}:sessions"

    def _tag(self, group: int) -> str:
        return f"{{{self._p}:s{group:x}}}"

    def _session(self, session_id: str, part: str = "") -> str:
        return f"{self._p}:session:{self._tag(slot_group(session_id))}:{session_id}{part}"

    def _expiry(self, group: int) -> str:
        return f"{self._p}:sessions:{self._tag(group)}:expiry"

    def _expiry_of(self, session_id: str) -> str:
        return self._expiry(slot_group(session_id))

    async def open(
        self,
        session_id: str,
        *,
        email: str,
        token_hash: str,
        sid: str,
        gateway: str,
        conn: str,
        expires: int,
    ) -> tuple[str, int]:
        keys = [
            self._session(session_id),
            self._session(session_id, ":rooms"),
            self._expiry_of(session_id),
        ]
        args: list[str | int] = [
            email,
            token_hash,
            sid,
            gateway,
            conn,
            expires,
            BACKSTOP_TTL_S,
            session_id,
        ]
        bound = str(await self._open(keys=keys, args=args))
        if bound != email:
            return bound, 0
        return bound, await self.track_user_sessions(email, add=session_id)

    async def _load(
        self, session_id: str
    ) -> tuple[dict[str, str], dict[str, str], float | None] | None:
        """A session's fields, rooms and expiry in one round trip (``None``: unknown)."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._session(session_id))
            pipe.hgetall(self._session(session_id, ":rooms"))
            pipe.zscore(self._expiry_of(session_id), session_id)
            fields, rooms, expires = await pipe.execute()
        if not fields or "email" not in fields:
            return None
        return fields, rooms, expires

    async def get(self, session_id: str) -> SessionRecord | None:
        if (loaded := await self._load(session_id)) is None:
            return None
        fields, rooms, _ = loaded
        return SessionRecord(
            email=fields["email"],
            token_hash=fields.get("token_hash", ""),
            sid=fields.get("sid", ""),
            gateway=fields.get("gateway", ""),
            conn=fields.get("conn", ""),
            rooms={room: int(pos) for room, pos in rooms.items()},
        )

    async def join(
        self, session_id: str, email: str, room_id: str, join_position: int, *, page: int
    ) -> PresenceChange:
        keys = [
            self._room(room_id, "users"),
            self._room(room_id, "clock"),
            self._room(room_id, f"conns:{email}"),
        ]
        # Side by side rather than in one pipeline: a pipeline holding a script costs a
        # SCRIPT EXISTS round trip first (redis-py); the script call reloads on NOSCRIPT.
        first, count, flat = await _both(
            self._join(keys=keys, args=[session_id, email, page]),
            self._r.hset(self._session(session_id, ":rooms"), room_id, join_position),
        )
        return PresenceChange(bool(first), _page(count, flat))

    async def leave(
        self, session_id: str, email: str, room_id: str, *, page: int
    ) -> PresenceChange:
        keys = [
            self._room(room_id, "users"),
            self._room(room_id, f"conns:{email}"),
            self._room(room_id, "clock"),
        ]
        last, count, flat = await _both(
            self._leave(keys=keys, args=[session_id, email, page]),
            self._r.hdel(self._session(session_id, ":rooms"), room_id),
        )
        return PresenceChange(bool(last), _page(count, flat))

    async def members(self, room_id: str, *, after: int | None, limit: int) -> MemberPage:
        key = self._room(room_id, "users")
        low = "-inf" if after is None else f"({after}"
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(key, low, "+inf", start=0, num=limit + 1, withscores=True)
            pipe.zcard(key)
            found, count = await pipe.execute()
        users = [str(u) for u, _ in found[:limit]]
        more = len(found) > limit
        return MemberPage(users, int(count), int(found[limit - 1][1]) if more else None)

    async def reattach(
        self, session_id: str, *, now: int, expires: int, gateway: str, conn: str
    ) -> bool:
        keys = [self._expiry_of(session_id), self._session(session_id)]
        args: list[str | int] = [session_id, now, expires, gateway, conn]
        return bool(await self._reattach(keys=keys, args=args))

    async def set_state(self, session_id: str, *, gateway: str, conn: str, state: str) -> None:
        await self._r.hset(
            self._session(session_id), mapping={"gateway": gateway, "conn": conn, "state": state}
        )

    async def known(self, session_ids: list[str]) -> list[bool]:
        async with self._r.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.exists(self._session(session_id))
            return [bool(n) for n in await pipe.execute()]

    async def set_expiry(self, session_ids: list[str], *, expires: int) -> None:
        if not session_ids:
            return
        groups: dict[int, list[str]] = {}
        for session_id in session_ids:
            groups.setdefault(slot_group(session_id), []).append(session_id)
        async with self._r.pipeline(transaction=False) as pipe:
            for group, ids in groups.items():
                pipe.zadd(self._expiry(group), dict.fromkeys(ids, expires), xx=True)
            await pipe.execute()

    async def expired(self, *, now: int, limit: int) -> list[str]:
        async with self._r.pipeline(transaction=False) as pipe:
            for group in range(SLOT_GROUPS):
                pipe.zrangebyscore(self._expiry(group), "-inf", now, start=0, num=limit)
            found = await pipe.execute()
        return [str(s) for ids in found for s in ids][:limit]

    async def claim(self, session_id: str, *, now: int) -> bool:
        return bool(await self._claim(keys=[self._expiry_of(session_id)], args=[session_id, now]))

    async def forget(self, session_id: str) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.delete(self._session(session_id), self._session(session_id, ":rooms"))
            pipe.zrem(self._expiry_of(session_id), session_id)
            await pipe.execute()

    async def count(self) -> int:
        async with self._r.pipeline(transaction=False) as pipe:
            for group in range(SLOT_GROUPS):
                pipe.zcard(self._expiry(group))
            return sum(int(n) for n in await pipe.execute())

    async def take(
        self, email: str, *, want: int, rate: float, burst: float, now: int
    ) -> tuple[int, int]:
        granted, wait = await self._take(
            keys=[f"{self._p}:rate:{{{email}}}"], args=[rate, burst, now, want]
        )
        return int(granted), int(wait)

    async def track_user_sessions(
        self, email: str, *, add: str | None = None, remove: str | None = None
    ) -> int:
        args: list[str | int] = [add or "", remove or "", BACKSTOP_TTL_S]
        return int(await self._user_set(keys=[self._user_sessions(email)], args=args))

    async def ping(self) -> None:
        await self._r.ping()

    async def rooms(self, *, limit: int) -> tuple[list[tuple[str, int]], bool]:
        # SCAN, never KEYS: incremental, so a large keyspace does not block Redis; stop as
        # soon as one room more than asked for has been seen.
        head, tail = f"{self._p}:room:{{", "}:users"
        pattern = f"{_glob_escape(head)}*{tail}"
        found: set[str] = set()
        async for key in self._r.scan_iter(match=pattern, count=_SCAN_COUNT):
            room = str(key)[len(head) : -len(tail)]
            if _ROOM_ID.match(room):
                found.add(room)
            if len(found) > limit:
                break
        chosen = sorted(found)[:limit]
        async with self._r.pipeline(transaction=False) as pipe:
            for room in chosen:
                pipe.zcard(self._room(room, "users"))
            counts = await pipe.execute()
        rooms = [(room, int(n)) for room, n in zip(chosen, counts, strict=True) if int(n) > 0]
        return rooms, len(found) > limit

    async def presence(
        self, room_id: str, *, limit: int, after: int | None = None
    ) -> tuple[list[tuple[str, list[str]]], MemberPage]:
        page = await self.members(room_id, after=after, limit=limit)
        async with self._r.pipeline(transaction=False) as pipe:
            for email in page.users:
                pipe.smembers(self._room(room_id, f"conns:{email}"))
            sessions = await pipe.execute()
        users = [
            (e, sorted(str(s) for s in ids)) for e, ids in zip(page.users, sessions, strict=True)
        ]
        return users, page

    async def view(self, session_id: str) -> SessionView | None:
        if (loaded := await self._load(session_id)) is None:
            return None
        fields, rooms, expires = loaded
        return SessionView(
            email=fields["email"],
            sid=fields.get("sid", ""),
            state=fields.get("state", ""),
            gateway=fields.get("gateway", ""),
            rooms={room: int(pos) for room, pos in rooms.items()},
            expires=None if expires is None else int(expires),
        )
