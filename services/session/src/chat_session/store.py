"""Where sessions and room presence live: the store interface and its records, in the
store's own terms (no Redis here).

A session is *attached* while a gateway heartbeats it (expiry = last heartbeat +
heartbeat TTL + resume window) and *detached* once its connection dropped (expiry = drop +
resume window). Resuming moves the expiry forward (:meth:`SessionStore.reattach`, refused
once expired, so a reaped session stays dead); the reaper lists the expired sessions and
claims each one (:meth:`SessionStore.claim`): exactly one claim wins, so each one's
``user_left`` goes out exactly once however many session instances run.

A request can reach the store long after its caller gave up: a session instance cut off
from some Redis nodes retries, and a write its kernel still holds is delivered once the
partition heals. Such a *late* request must not undo what came after it, so the store
refuses what cannot be current (:class:`SessionGone`):

* an ended session stays ended (:meth:`SessionStore.end` leaves a tombstone that
  :meth:`SessionStore.open` honours for :data:`TOMBSTONE_TTL_S`);
* a session is opened, joined and left only by the connection that holds it (a late
  request of a connection it has since moved from is refused);
* a connection's joins and leaves are numbered (:class:`Fence`): one numbered below the
  last one applied to the same room of its session is refused (per room, so the leave a
  gateway sends on its own, when a membership ended elsewhere, never refuses a join of
  another room that overtook it).

:class:`SessionStore` is kept by :class:`~chat_session.redisstore.RedisSessionStore` (one
Redis, Sentinel or a Redis Cluster) and :class:`~chat_session.memorystore.InMemorySessionStore`
(fast tests of the logic above it); the contract suite in ``tests/contracts/session_store.py``
holds both to the same answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from chat_common.errors import Unavailable

__all__ = [
    "TOMBSTONE_TTL_S",
    "Fence",
    "MemberPage",
    "PresenceChange",
    "SessionGone",
    "SessionRecord",
    "SessionStore",
    "SessionView",
    "StoreUnavailable",
    "now_ms",
]


class StoreUnavailable(Unavailable):
    """The store could not answer now (its server is unreachable, failing over, or too slow):
    the same call may work later. Callers see ``UNAVAILABLE``."""


class SessionGone(Exception):
    """The session has ended, or another connection holds it, or a later request of this
    connection came first: the request changed nothing. Callers see ``NOT_FOUND``."""


TOMBSTONE_TTL_S = 15 * 60
"""How long an ended session refuses to be opened again: longer than any request can be
late (a stalled Redis call gives up after seconds; TCP gives up retransmitting a write
after about 15 minutes with Linux's default ``tcp_retries2``)."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Which connection asks, and the number of this join or leave among its own (from 1,
    increasing; a resume starts the count again on the new connection)."""

    conn: str
    op: int


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
        included; 0 otherwise). Raises :class:`SessionGone` (nothing changed) when the
        session has ended or another connection than ``conn`` holds it (or none: it is
        detached, and only a resume attaches it again)."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None: ...

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
        """Count the session in the room; the change carries the room's first ``page``
        users. With ``fence``, the session's side is checked and written first: raises
        :class:`SessionGone` (nothing changed) unless ``fence.conn`` holds the session and
        ``fence.op`` is above the last one applied to this room."""
        ...

    async def leave(
        self,
        session_id: str,
        email: str,
        room_id: str,
        *,
        page: int,
        fence: Fence | None = None,
    ) -> PresenceChange:
        """Take the session out of the room; the change carries the room's users when
        there are at most ``page``. ``fence`` as for :meth:`join`."""
        ...

    async def members(self, room_id: str, *, after: int | None, limit: int) -> MemberPage:
        """Up to ``limit`` users of the room in join order, from after ``after`` (a page's
        ``next``; ``None``: from the first)."""
        ...

    async def reattach(
        self, session_id: str, *, now: int, expires: int, gateway: str, conn: str
    ) -> bool:
        """Attach a live session to ``conn`` at ``gateway`` until ``expires``; ``False``
        (and nothing changed) when it has expired. The new connection's joins and leaves
        are numbered from 1 again."""
        ...

    async def detach(self, session_id: str, *, conn: str, expires: int) -> bool:
        """The connection ``conn`` dropped: if it still holds the session, mark the session
        detached (held by no connection) until ``expires``, in one step, so a resume that
        took the session over meanwhile keeps it; whether it did."""
        ...

    async def known(self, session_ids: list[str]) -> list[bool]: ...

    async def set_expiry(self, session_ids: list[str], *, expires: int) -> None:
        """Move the expiry of the known ones among ``session_ids`` to ``expires`` (later for
        a gateway's heartbeat, sooner for a dropped connection); unknown ids are skipped."""
        ...

    async def expired(self, *, now: int, limit: int) -> list[str]: ...

    async def claim(self, session_id: str, *, now: int) -> bool: ...

    async def forget(self, session_id: str) -> None:
        """Delete the session (it may be opened again: a refused first join)."""
        ...

    async def ended(self, session_id: str) -> bool:
        """Whether the session was ended (its tombstone is there)."""
        ...

    async def end(self, session_id: str) -> None:
        """Delete the session for good: :meth:`open` refuses it for
        :data:`TOMBSTONE_TTL_S`."""
        ...

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

    async def room_memberships(self) -> set[tuple[str, str, str]]:
        """Every (room, email, session id) the rooms' side counts (a full sweep: for
        :mod:`chat_session.drift`)."""
        ...

    async def session_memberships(self) -> dict[tuple[str, str, str], int]:
        """Every (room, email, session id) the sessions' side holds (sessions in the expiry
        index), with its join position."""
        ...


def now_ms() -> int:
    return int(time.time() * 1000)
