"""Sessions and room presence in memory: a :class:`~chat_session.store.SessionStore` with
the semantics of :class:`~chat_session.redisstore.RedisSessionStore`, for fast tests of
the logic above it.

No I/O and no clock of its own: every time is the epoch-ms argument a call is given. Each
method runs without yielding to the event loop, so it is one atomic step, as each of the
Redis store's scripts is. What it leaves out, on purpose:

* the long backstop TTL of session and user keys (nothing here outlives the process);
* the token bucket's idle expiry (an idle bucket is full again by then anyway);
* the tombstones' TTL: the last :data:`TOMBSTONES_KEPT` ended sessions stay ended instead.

Where the Redis store's answer depends on its layout, this one gives the obvious answer:
:meth:`~InMemorySessionStore.expired` lists the oldest first (Redis: slot group by slot
group), and :meth:`~InMemorySessionStore.rooms` the first rooms by id (Redis: the first
its scan meets, sorted).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from chat_session.store import (
    Fence,
    MemberPage,
    PresenceChange,
    SessionGone,
    SessionRecord,
    SessionStore,
    SessionView,
)

__all__ = ["TOMBSTONES_KEPT", "InMemorySessionStore"]

TOMBSTONES_KEPT = 100_000


@dataclass(slots=True)
class _Session:
    """A session's fields: the identity its first ``open`` bound, and where it lives now."""

    email: str | None = None
    """``None`` until bound (``reattach`` may create an unbound one)."""
    token_hash: str = ""
    sid: str = ""
    gateway: str = ""
    conn: str = ""
    state: str = ""
    ops: dict[str, int] = field(default_factory=dict)
    """room -> the number of ``conn``'s last join or leave of it applied."""


@dataclass(slots=True)
class _Room:
    users: dict[str, int] = field(default_factory=dict)
    """email -> join order. Inserted in increasing order, so the dict's order is join order."""
    conns: dict[str, set[str]] = field(default_factory=dict)
    """email -> the user's session ids in the room."""
    clock: int = 0
    """The last join order given; kept when the room empties, so cursors stay valid."""


class InMemorySessionStore:
    """:class:`~chat_session.store.SessionStore` in this process's memory."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._joined: dict[str, dict[str, int]] = {}  # session id -> room -> join position
        self._expiry: dict[str, int] = {}  # the expiry index: session id -> epoch ms
        self._rooms: dict[str, _Room] = {}
        self._user_sessions: dict[str, set[str]] = {}  # email -> live session ids
        self._buckets: dict[str, tuple[float, int]] = {}  # email -> (tokens, ts)
        self._ended: OrderedDict[str, None] = OrderedDict()  # tombstones, oldest first

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
        if session_id in self._ended:
            raise SessionGone(session_id)
        session = self._sessions.setdefault(session_id, _Session())
        if session.email is not None and session.email != email:
            return session.email, 0  # another user's session: nothing changes
        if session.email is not None and session.conn != conn:
            raise SessionGone(session_id)  # held by another connection, or detached
        if session.email is None:
            session.email, session.token_hash, session.sid = email, token_hash, sid
        session.gateway, session.conn, session.state = gateway, conn, "attached"
        self._expiry[session_id] = expires
        return email, await self.track_user_sessions(email, add=session_id)

    async def get(self, session_id: str) -> SessionRecord | None:
        session = self._sessions.get(session_id)
        if session is None or session.email is None:
            return None
        return SessionRecord(
            email=session.email,
            token_hash=session.token_hash,
            sid=session.sid,
            gateway=session.gateway,
            conn=session.conn,
            rooms=dict(self._joined.get(session_id, {})),
        )

    def _fenced(self, session_id: str, room_id: str, fence: Fence | None) -> None:
        """Check ``fence`` against the session and record it (the Redis store's FENCE)."""
        if fence is None:
            return
        session = self._sessions.get(session_id)
        if session is None or session.conn != fence.conn:
            raise SessionGone(session_id)
        if fence.op <= session.ops.get(room_id, 0):
            raise SessionGone(session_id)
        session.ops[room_id] = fence.op

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
        self._fenced(session_id, room_id, fence)
        self._joined.setdefault(session_id, {})[room_id] = join_position
        room = self._rooms.setdefault(room_id, _Room())
        conns = room.conns.setdefault(email, set())
        first = not conns  # the user's first connection in the room
        conns.add(session_id)
        if first and email not in room.users:
            room.clock += 1
            room.users[email] = room.clock
        return PresenceChange(first, self._members(room_id, after=None, limit=page))

    async def leave(
        self,
        session_id: str,
        email: str,
        room_id: str,
        *,
        page: int,
        fence: Fence | None = None,
    ) -> PresenceChange:
        self._fenced(session_id, room_id, fence)
        self._joined.get(session_id, {}).pop(room_id, None)
        room = self._rooms.get(room_id, _Room())
        conns = room.conns.get(email, set())
        last = conns == {session_id}  # the user's last connection in the room
        conns.discard(session_id)
        if not conns:
            room.conns.pop(email, None)
        if last:
            room.users.pop(email, None)
        count = len(room.users)
        if not room.users and not room.conns:
            self._rooms.pop(room_id, None)  # as Redis drops an empty room's keys
        return PresenceChange(
            last, MemberPage(list(room.users) if count <= page else [], count, None)
        )

    async def members(self, room_id: str, *, after: int | None, limit: int) -> MemberPage:
        return self._members(room_id, after=after, limit=limit)

    def _members(self, room_id: str, *, after: int | None, limit: int) -> MemberPage:
        users = self._rooms[room_id].users if room_id in self._rooms else {}
        found = [(u, order) for u, order in users.items() if after is None or order > after]
        more = len(found) > limit
        return MemberPage(
            [u for u, _ in found[:limit]], len(users), found[limit - 1][1] if more else None
        )

    async def reattach(
        self, session_id: str, *, now: int, expires: int, gateway: str, conn: str
    ) -> bool:
        expiry = self._expiry.get(session_id)
        if expiry is None or expiry <= now:
            return False
        self._expiry[session_id] = expires
        session = self._sessions.setdefault(session_id, _Session())
        session.gateway, session.conn, session.state = gateway, conn, "attached"
        session.ops.clear()
        return True

    async def detach(self, session_id: str, *, conn: str, expires: int) -> bool:
        session = self._sessions.get(session_id)
        if session is None or session.conn != conn:
            return False
        if session_id in self._expiry:
            self._expiry[session_id] = expires
        session.gateway, session.conn, session.state = "", "", "detached"
        return True

    async def known(self, session_ids: list[str]) -> list[bool]:
        return [session_id in self._sessions for session_id in session_ids]

    async def set_expiry(self, session_ids: list[str], *, expires: int) -> None:
        for session_id in session_ids:
            if session_id in self._expiry:  # only sessions the index holds (ZADD XX)
                self._expiry[session_id] = expires

    async def expired(self, *, now: int, limit: int) -> list[str]:
        due = sorted((at, session_id) for session_id, at in self._expiry.items() if at <= now)
        return [session_id for _, session_id in due[:limit]]

    async def claim(self, session_id: str, *, now: int) -> bool:
        expiry = self._expiry.get(session_id)
        if expiry is None or expiry > now:
            return False
        del self._expiry[session_id]
        return True

    async def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._joined.pop(session_id, None)
        self._expiry.pop(session_id, None)

    async def ended(self, session_id: str) -> bool:
        return session_id in self._ended

    async def end(self, session_id: str) -> None:
        await self.forget(session_id)
        self._ended[session_id] = None
        self._ended.move_to_end(session_id)
        while len(self._ended) > TOMBSTONES_KEPT:
            self._ended.popitem(last=False)

    async def count(self) -> int:
        return len(self._expiry)

    async def take(
        self, email: str, *, want: int, rate: float, burst: float, now: int
    ) -> tuple[int, int]:
        tokens, ts = self._buckets.get(email, (burst, now))
        tokens = min(burst, tokens + max(0, now - ts) * rate / 1000)
        granted = min(want, math.floor(tokens))
        tokens -= granted
        # Redis keeps what Lua's tostring() writes: 14 significant digits. The time never
        # goes back, or a late take with an older time would refill that time twice.
        self._buckets[email] = (float(f"{tokens:.14g}"), max(ts, now))
        wait = 0 if granted else math.ceil((1 - tokens) * 1000 / rate)
        return granted, wait

    async def track_user_sessions(
        self, email: str, *, add: str | None = None, remove: str | None = None
    ) -> int:
        sessions = self._user_sessions.setdefault(email, set())
        if add:
            sessions.add(add)
        if remove:
            sessions.discard(remove)
        return len(sessions)

    async def ping(self) -> None:
        return None

    async def rooms(self, *, limit: int) -> tuple[list[tuple[str, int]], bool]:
        occupied = [(r, len(room.users)) for r, room in sorted(self._rooms.items()) if room.users]
        return occupied[:limit], len(occupied) > limit

    async def presence(
        self, room_id: str, *, limit: int, after: int | None = None
    ) -> tuple[list[tuple[str, list[str]]], MemberPage]:
        page = self._members(room_id, after=after, limit=limit)
        conns = self._rooms[room_id].conns if room_id in self._rooms else {}
        return [(email, sorted(conns.get(email, ()))) for email in page.users], page

    async def room_memberships(self) -> set[tuple[str, str, str]]:
        return {
            (room_id, email, session_id)
            for room_id, room in self._rooms.items()
            for email, sessions in room.conns.items()
            for session_id in sessions
        }

    async def session_memberships(self) -> dict[tuple[str, str, str], int]:
        found: dict[tuple[str, str, str], int] = {}
        for session_id in self._expiry:
            session = self._sessions.get(session_id)
            if session is None or session.email is None:
                continue
            for room_id, position in self._joined.get(session_id, {}).items():
                found[(room_id, session.email, session_id)] = position
        return found

    async def view(self, session_id: str) -> SessionView | None:
        if (record := await self.get(session_id)) is None:
            return None
        return SessionView(
            email=record.email,
            sid=record.sid,
            state=self._sessions[session_id].state,
            gateway=record.gateway,
            rooms=record.rooms,
            expires=self._expiry.get(session_id),
        )


def _conforms(store: InMemorySessionStore) -> SessionStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member (a ``type[SessionStore]``
    annotation is checked too, but its error does not say which member differs)."""
    return store
