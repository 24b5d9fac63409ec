"""Where sessions and room presence live: the store interface and its Redis implementation.

Redis layout (``P`` = key prefix, ``{..}`` = cluster hash tag)::

    P:room:{R}:users          ZSET  email -> join order (user-level presence, join order)
    P:room:{R}:clock          STRING counter giving the join order
    P:room:{R}:conns:<email>  SET   session ids of that user in the room
    P:session:{S}             HASH  email, gateway
    P:session:{S}:rooms       SET   rooms the session is in

A user is listed once however many connections they have; ``first``/``last`` say whether
this connection was the user's first in / last out of the room. Room-level changes are one
Lua script each, so concurrent joins and leaves never lose or double a member.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

__all__ = ["PresenceChange", "RedisSessionStore", "SessionStore"]

_JOIN = """
local added = redis.call('SADD', KEYS[3], ARGV[1])
local first = 0
if added == 1 and redis.call('SCARD', KEYS[3]) == 1 then
  first = 1
  if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[2])
  end
end
return {first, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""

_LEAVE = """
local removed = redis.call('SREM', KEYS[2], ARGV[1])
local last = 0
if removed == 1 and redis.call('SCARD', KEYS[2]) == 0 then
  last = 1
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return {last, redis.call('ZRANGE', KEYS[1], 0, -1)}
"""


class PresenceChange(tuple[bool, list[str]]):
    """(changed, users): whether the user entered/left the room, and who is in it now."""

    @property
    def changed(self) -> bool:
        return self[0]

    @property
    def users(self) -> list[str]:
        return self[1]


class SessionStore(Protocol):
    """Sessions and presence, whatever holds them."""

    async def bind_email(self, session_id: str, email: str, gateway_id: str) -> str:
        """Fix the session's email on first use; returns the email the session has."""
        ...

    async def join(self, session_id: str, email: str, room_id: str) -> PresenceChange: ...

    async def leave(self, session_id: str, email: str, room_id: str) -> PresenceChange: ...

    async def session_rooms(self, session_id: str) -> tuple[str | None, list[str]]:
        """(email, rooms) of a session; (None, []) when unknown."""
        ...

    async def forget(self, session_id: str) -> None: ...

    async def ping(self) -> None: ...


class RedisSessionStore:
    """:class:`SessionStore` on Redis."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._r = redis
        self._p = prefix
        self._join = redis.register_script(_JOIN)
        self._leave = redis.register_script(_LEAVE)

    def _room(self, room_id: str, part: str) -> str:
        return f"{self._p}:room:{{{room_id}}}:{part}"

    def _session(self, session_id: str, part: str = "") -> str:
        return f"{self._p}:session:{{{session_id}}}{part}"

    async def bind_email(self, session_id: str, email: str, gateway_id: str) -> str:
        key = self._session(session_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "email", email)
            pipe.hset(key, "gateway", gateway_id)
            pipe.hget(key, "email")
            _, _, bound = await pipe.execute()
        return str(bound)

    async def join(self, session_id: str, email: str, room_id: str) -> PresenceChange:
        keys = [
            self._room(room_id, "users"),
            self._room(room_id, "clock"),
            self._room(room_id, f"conns:{email}"),
        ]
        first, users = await self._join(keys=keys, args=[session_id, email])
        await self._r.sadd(self._session(session_id, ":rooms"), room_id)
        return PresenceChange((bool(first), [str(u) for u in users]))

    async def leave(self, session_id: str, email: str, room_id: str) -> PresenceChange:
        keys = [self._room(room_id, "users"), self._room(room_id, f"conns:{email}")]
        last, users = await self._leave(keys=keys, args=[session_id, email])
        await self._r.srem(self._session(session_id, ":rooms"), room_id)
        return PresenceChange((bool(last), [str(u) for u in users]))

    async def session_rooms(self, session_id: str) -> tuple[str | None, list[str]]:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hget(self._session(session_id), "email")
            pipe.smembers(self._session(session_id, ":rooms"))
            email, rooms = await pipe.execute()
        return (str(email) if email is not None else None), sorted(str(r) for r in rooms)

    async def forget(self, session_id: str) -> None:
        await self._r.delete(self._session(session_id), self._session(session_id, ":rooms"))

    async def ping(self) -> None:
        await self._r.ping()
