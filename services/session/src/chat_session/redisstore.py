"""Sessions and room presence on Redis: :class:`RedisSessionStore`, the
:class:`~chat_session.store.SessionStore` of the service.

Redis layout (``P`` = key prefix, ``{..}`` = cluster hash tag, ``G`` = the session's slot
group, ``crc32(S) % 16`` in hex)::

    P:room:{R}:users               ZSET  email -> join order (user-level presence)
    P:room:{R}:clock               STRING counter giving the join order
    P:room:{R}:conns:<email>       SET   session ids of that user in the room
    P:session:{P:sG}:S             HASH  email, gateway, conn, token_hash (sha256 of the token), sid, state
    P:session:{P:sG}:S:rooms       HASH  room -> join position (last seq in the join's history)
    P:session:{P:sG}:S:ops         HASH  room -> number of the connection's last join/leave applied
    P:session:{P:sG}:S:ended       STRING tombstone of an ended session (TTL TOMBSTONE_TTL_S)
    P:sessions:{P:sG}:expiry       ZSET  session id -> when it expires (epoch ms)
    P:user:{E}:sessions            SET   the user's live session ids
    P:rate:{E}                     HASH  the user's shared token bucket

Every script and multi-key command touches keys of one hash tag only, so the same layout
runs on one Redis, on Sentinel and on Redis Cluster. A session's keys share their slot with
the expiry index of its group: the 16 groups spread the index over the cluster's primaries,
and the reaper walks each group's index.

The expiry index holds each session's expiry (see :mod:`chat_session.store` for what moves
it); the reaper claims an expired session with an atomic ZREM (the ``CLAIM`` script), so
exactly one claim wins. Session keys also carry a long Redis TTL as a backstop. The Lua
scripts are in :mod:`chat_session.redisscripts`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from chat_common.schemas import ROOM_ID_PATTERN
from chat_session import redisscripts as scripts
from chat_session.store import (
    TOMBSTONE_TTL_S,
    Fence,
    MemberPage,
    PresenceChange,
    SessionGone,
    SessionRecord,
    SessionStore,
    SessionView,
    StoreUnavailable,
)

__all__ = ["BACKSTOP_TTL_S", "SLOT_GROUPS", "RedisSessionStore", "slot_group"]

BACKSTOP_TTL_S = 24 * 3600
SLOT_GROUPS = 16
"""How many expiry indexes (and hash tags) sessions are spread over."""
_SCAN_COUNT = 500
_ROOM_ID = re.compile(ROOM_ID_PATTERN)


def _page(count: int, flat: list[str]) -> MemberPage:
    """A page from a ``WITHSCORES`` reply (``[user, score, user, score, ...]``)."""
    users = [str(u) for u in flat[0::2]]
    more = count > len(users) and bool(users)
    return MemberPage(users, int(count), int(float(flat[-1])) if more else None)


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


_log = logging.getLogger("chat.session.redis")
_T = TypeVar("_T")


def _raised_by_transport(exc: BaseException) -> bool:
    """Whether ``exc`` came from inside redis-py or the event loop's transport (asyncio's
    or uvloop's): a write on a connection the peer reset surfaces there as
    ``AttributeError``/``TypeError`` (redis/redis-py#4287) or, under uvloop, as
    ``RuntimeError`` ("unable to perform operation on <TCPTransport closed=True>") rather
    than a ``ConnectionError``, and means the same. One of ours is never mistaken for it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    path = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(part in path for part in ("/redis/", "/asyncio/", "uvloop/"))


def _unavailable_when_unreachable(cls: type[_T]) -> type[_T]:
    """Every public coroutine of ``cls`` raises :class:`StoreUnavailable` where redis-py
    raises its own errors (or the socket's): the store's callers never see a driver type.
    The error's class is logged, never its text."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def translated(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (RedisError, OSError) as exc:
                _log.warning("redis call failed", extra={"error": type(exc).__name__})
                raise StoreUnavailable("session store unavailable") from exc
            except (AttributeError, TypeError, RuntimeError) as exc:
                if not _raised_by_transport(exc):
                    raise
                _log.warning("redis connection torn down", extra={"error": type(exc).__name__})
                raise StoreUnavailable("session store unavailable") from exc

        return translated

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, wrap(member))
    return cls


@_unavailable_when_unreachable
class RedisSessionStore:
    """:class:`~chat_session.store.SessionStore` on Redis: one server (or Sentinel's
    primary) or a Redis Cluster, through a client with ``decode_responses=True``."""

    def __init__(self, redis: Redis | RedisCluster, *, prefix: str) -> None:
        self._r = redis
        self._p = prefix
        self._open = redis.register_script(scripts.OPEN)
        self._join = redis.register_script(scripts.JOIN)
        self._leave = redis.register_script(scripts.LEAVE)
        self._reattach = redis.register_script(scripts.REATTACH)
        self._fence = redis.register_script(scripts.FENCE)
        self._detach = redis.register_script(scripts.DETACH)
        self._claim = redis.register_script(scripts.CLAIM)
        self._take = redis.register_script(scripts.TAKE)
        self._user_set = redis.register_script(scripts.USER_SESSIONS)

    def _room(self, room_id: str, part: str) -> str:
        return f"{self._p}:room:{{{room_id}}}:{part}"

    def _user_sessions(self, email: str) -> str:
        return f"{self._p}:user:{{{email}}}:sessions"

    def _tag(self, group: int) -> str:
        return f"{{{self._p}:s{group:x}}}"

    def _session(self, session_id: str, part: str = "") -> str:
        return f"{self._p}:session:{self._tag(slot_group(session_id))}:{session_id}{part}"

    def _session_keys(self, session_id: str) -> list[str]:
        """The session's hash, rooms and join/leave numbers (its tombstone aside)."""
        return [self._session(session_id, part) for part in ("", ":rooms", ":ops")]

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
            self._session(session_id, ":ended"),
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
        if not bound:
            raise SessionGone(session_id)
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
        self,
        session_id: str,
        email: str,
        room_id: str,
        join_position: int,
        *,
        page: int,
        fence: Fence | None = None,
    ) -> PresenceChange:
        keys = [
            self._room(room_id, "users"),
            self._room(room_id, "clock"),
            self._room(room_id, f"conns:{email}"),
        ]
        args: list[str | int] = [session_id, email, page]
        if fence is not None:
            await self._fenced(session_id, fence, room_id, join_position)
            first, count, flat = await self._join(keys=keys, args=args)
        else:
            # Side by side rather than in one pipeline: a pipeline holding a script costs a
            # SCRIPT EXISTS round trip first (redis-py); the script call reloads on NOSCRIPT.
            first, count, flat = await _both(
                self._join(keys=keys, args=args),
                self._r.hset(self._session(session_id, ":rooms"), room_id, join_position),
            )
        return PresenceChange(bool(first), _page(count, flat))

    async def leave(
        self,
        session_id: str,
        email: str,
        room_id: str,
        *,
        page: int,
        fence: Fence | None = None,
    ) -> PresenceChange:
        keys = [
            self._room(room_id, "users"),
            self._room(room_id, f"conns:{email}"),
            self._room(room_id, "clock"),
        ]
        args: list[str | int] = [session_id, email, page]
        if fence is not None:
            await self._fenced(session_id, fence, room_id, None)
            last, count, flat = await self._leave(keys=keys, args=args)
        else:
            last, count, flat = await _both(
                self._leave(keys=keys, args=args),
                self._r.hdel(self._session(session_id, ":rooms"), room_id),
            )
        return PresenceChange(bool(last), _page(count, flat))

    async def _fenced(
        self, session_id: str, fence: Fence, room_id: str, join_position: int | None
    ) -> None:
        """The session's side of a numbered join (a position) or leave (``None``), first:
        the room's side follows only when this was applied (a late request stops here)."""
        keys = [
            self._session(session_id),
            self._session(session_id, ":rooms"),
            self._session(session_id, ":ops"),
        ]
        position = "" if join_position is None else join_position
        args: list[str | int] = [fence.conn, fence.op, room_id, position, BACKSTOP_TTL_S]
        if not await self._fence(keys=keys, args=args):
            raise SessionGone(session_id)

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
        keys = [
            self._expiry_of(session_id),
            self._session(session_id),
            self._session(session_id, ":ops"),
        ]
        args: list[str | int] = [session_id, now, expires, gateway, conn]
        return bool(await self._reattach(keys=keys, args=args))

    async def detach(self, session_id: str, *, conn: str, expires: int) -> bool:
        keys = [self._session(session_id), self._expiry_of(session_id)]
        return bool(await self._detach(keys=keys, args=[conn, expires, session_id]))

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
            pipe.delete(*self._session_keys(session_id))
            pipe.zrem(self._expiry_of(session_id), session_id)
            await pipe.execute()

    async def ended(self, session_id: str) -> bool:
        return bool(await self._r.exists(self._session(session_id, ":ended")))

    async def end(self, session_id: str) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(self._session(session_id, ":ended"), 1, ex=TOMBSTONE_TTL_S)
            pipe.delete(*self._session_keys(session_id))
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

    async def room_memberships(self) -> set[tuple[str, str, str]]:
        head, middle = f"{self._p}:room:{{", "}:conns:"
        keys: list[tuple[str, str]] = []
        async for key in self._r.scan_iter(
            match=f"{_glob_escape(head)}*{_glob_escape(middle)}*", count=_SCAN_COUNT
        ):
            room, sep, email = str(key)[len(head) :].partition(middle)
            if sep and _ROOM_ID.match(room):
                keys.append((room, email))
        found: set[tuple[str, str, str]] = set()
        for start in range(0, len(keys), _SCAN_COUNT):
            chunk = keys[start : start + _SCAN_COUNT]
            async with self._r.pipeline(transaction=False) as pipe:
                for room, email in chunk:
                    pipe.smembers(self._room(room, f"conns:{email}"))
                members = await pipe.execute()
            found.update(
                (room, email, str(s))
                for (room, email), ids in zip(chunk, members, strict=True)
                for s in ids
            )
        return found

    async def session_memberships(self) -> dict[tuple[str, str, str], int]:
        async with self._r.pipeline(transaction=False) as pipe:
            for group in range(SLOT_GROUPS):
                pipe.zrange(self._expiry(group), 0, -1)
            ids = [str(s) for group in await pipe.execute() for s in group]
        found: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(ids), _SCAN_COUNT):
            chunk = ids[start : start + _SCAN_COUNT]
            async with self._r.pipeline(transaction=False) as pipe:
                for session_id in chunk:
                    pipe.hget(self._session(session_id), "email")
                    pipe.hgetall(self._session(session_id, ":rooms"))
                replies = await pipe.execute()
            for session_id, email, rooms in zip(chunk, replies[0::2], replies[1::2], strict=True):
                if email:
                    found.update(
                        ((room, str(email), session_id), int(pos)) for room, pos in rooms.items()
                    )
        return found

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


def _conforms(store: RedisSessionStore) -> SessionStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[SessionStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
