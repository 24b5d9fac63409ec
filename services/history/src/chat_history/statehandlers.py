"""Durable chat state endpoints (:mod:`chat_common.chatstate`): ``member_join``,
``member_leave``, ``mark_read``, ``inbox``, ``user_rooms``, ``user_events`` (the gateway's)
and ``room_members`` (operators').

A write's user events are published on the user's stream (``chat.user.<token>.events``)
once its transaction has committed, in stream order. A publish that fails is logged and
the request still succeeds: the events are kept, and a gateway that sees a gap in
``userSeq`` reads them back (``user_events``). Concurrent requests of one user may publish
out of order; ``userSeq`` orders them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from chat_common import subjects
from chat_common.chatstate import (
    MAX_MARKS,
    InboxRequest,
    MarkReadRequest,
    MemberJoinRequest,
    MemberLeaveRequest,
    RoomMembersRequest,
    UserEvent,
    UserEventsRequest,
    UserRoomsRequest,
)
from chat_common.errors import InvalidArgument
from chat_common.natsio import Publisher, publish
from chat_common.schemas import encode, parse_request
from chat_history.metrics import USER_EVENTS
from chat_history.statestore import ChatStateStore

__all__ = [
    "INBOX_MAX",
    "MEMBERS_MAX",
    "STATE_ENDPOINTS",
    "USER_EVENTS_MAX",
    "USER_ROOMS_MAX",
    "ChatStateHandlers",
]

_log = logging.getLogger("chat.history.state")

INBOX_MAX = 200
"""The largest inbox page."""
USER_EVENTS_MAX = 1000
"""The most user events one request returns."""
MEMBERS_MAX = 1000
"""The largest page of a room's members."""
USER_ROOMS_MAX = 10_000
"""The most rooms one ``user_rooms`` returns."""
STATE_ENDPOINTS = (
    "member_join", "member_leave", "mark_read", "inbox", "user_rooms", "user_events",
    "room_members",
)  # fmt: skip
"""The endpoints' names (``chat.history.<name>``), each a method of the handlers."""


def _limit(limit: int, most: int) -> int:
    if not 1 <= limit <= most:
        raise InvalidArgument(f"limit must be 1..{most}")
    return limit


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChatStateHandlers:
    """The chat state endpoints over a store, publishing user events on ``bus``."""

    def __init__(
        self,
        store: ChatStateStore,
        bus: Publisher,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock

    def endpoints(self) -> Mapping[str, Callable[[bytes], Awaitable[bytes]]]:
        """Each endpoint's name and handler."""
        return {name: getattr(self, name) for name in STATE_ENDPOINTS}

    async def _announce(self, user_id: str, events: Sequence[UserEvent]) -> None:
        """Publish committed events on the user's stream; a failure is only logged."""
        subject = subjects.user_events(user_id)
        for event in events:
            try:
                await publish(self._bus, subject, encode(event))
            except Exception as exc:
                USER_EVENTS.labels("failed").inc()
                _log.warning(
                    "user event publish failed after commit",
                    extra={"error": type(exc).__name__, "user_seq": event.user_seq},
                )
            else:
                USER_EVENTS.labels("published").inc()

    async def member_join(self, body: bytes) -> bytes:
        req = parse_request(body, MemberJoinRequest)
        written = await self._store.join(req.user_id, req.email, req.room_id, now=self._clock())
        await self._announce(req.user_id, written.events)
        return encode(written.result)

    async def member_leave(self, body: bytes) -> bytes:
        req = parse_request(body, MemberLeaveRequest)
        written = await self._store.leave(req.user_id, req.room_id, now=self._clock())
        await self._announce(req.user_id, written.events)
        return encode(written.result)

    async def mark_read(self, body: bytes) -> bytes:
        req = parse_request(body, MarkReadRequest)
        if not 1 <= len(req.marks) <= MAX_MARKS:
            raise InvalidArgument(f"marks must be 1..{MAX_MARKS}")
        if len({m.room_id for m in req.marks}) != len(req.marks):
            raise InvalidArgument("marks must name distinct rooms")
        written = await self._store.mark_read(req.user_id, req.marks, now=self._clock())
        await self._announce(req.user_id, written.events)
        return encode(written.result)

    async def inbox(self, body: bytes) -> bytes:
        """A page of the user's inbox; an ``after`` that cannot be followed is
        ``INVALID_ARGUMENT`` ("cursor expired: list again")."""
        req = parse_request(body, InboxRequest)
        limit = _limit(req.limit, INBOX_MAX)
        page = await self._store.inbox(req.user_id, after=req.after, limit=limit, now=self._clock())
        return encode(page)

    async def user_rooms(self, body: bytes) -> bytes:
        req = parse_request(body, UserRoomsRequest)
        rooms = await self._store.user_rooms(req.user_id, limit=_limit(req.limit, USER_ROOMS_MAX))
        return encode(rooms)

    async def user_events(self, body: bytes) -> bytes:
        req = parse_request(body, UserEventsRequest)
        limit = _limit(req.limit, USER_EVENTS_MAX)
        return encode(
            await self._store.user_events(req.user_id, after_seq=req.after_seq, limit=limit)
        )

    async def room_members(self, body: bytes) -> bytes:
        req = parse_request(body, RoomMembersRequest)
        limit = _limit(req.limit, MEMBERS_MAX)
        return encode(await self._store.room_members(req.room_id, after=req.after, limit=limit))
