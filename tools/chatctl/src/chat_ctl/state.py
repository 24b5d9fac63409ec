"""Reading the durable chat state page by page: a user's rooms (``chat.history.inbox``) and
a room's members (``chat.history.room_members``) beside its presence
(``chat.session.presence``).

Independent of NATS: each function takes the request call, so the paging and the merge can
be checked against any lists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from chat_common.chatstate import (
    InboxRequest,
    InboxResponse,
    InboxRoom,
    RoomMember,
    RoomMembersRequest,
    RoomMembersResponse,
)
from chat_common.schemas import PresenceRequest, PresenceResponse, PresentUser

__all__ = [
    "INBOX_PAGE",
    "MEMBERS_PAGE",
    "PRESENCE_MAX",
    "PRESENCE_PAGE",
    "MemberRow",
    "RoomRoster",
    "UserRooms",
    "present_users",
    "room_members",
    "roster",
    "user_rooms",
]

INBOX_PAGE = 200
"""The largest page history's ``inbox`` serves."""
MEMBERS_PAGE = 1000
"""The largest page history's ``room_members`` serves."""
PRESENCE_PAGE = 1000
"""The largest page the session service's ``presence`` serves."""
PRESENCE_MAX = 10_000
"""The most present users ``chatctl members`` reads to match them with the members."""

Inbox = Callable[[InboxRequest], Awaitable[InboxResponse]]
Members = Callable[[RoomMembersRequest], Awaitable[RoomMembersResponse]]
Presence = Callable[[PresenceRequest], Awaitable[PresenceResponse]]
_T = TypeVar("_T")
_C = TypeVar("_C", str, int)


class UserRooms(msgspec.Struct, frozen=True, rename="camel"):
    """``chatctl user-rooms``: the user's first rooms, most recently active first."""

    user_id: str
    total: int
    """How many rooms the user has (more than listed when ``--limit`` cut the list)."""
    rooms: list[InboxRoom]


class MemberRow(msgspec.Struct, frozen=True, rename="camel"):
    """One user of a room: a durable member (``user_id`` set), present or not, or a user
    present without being a member (``user_id`` ``None``)."""

    email: str
    user_id: str | None = None
    role: str | None = None
    read_seq: int | None = None
    unread: int | None = None
    sessions: list[str] = msgspec.field(default_factory=list)
    """The user's sessions in the room (presence), by email; empty: not connected."""


class RoomRoster(msgspec.Struct, frozen=True, rename="camel"):
    """``chatctl members``: a room's durable members beside its presence."""

    room_id: str
    last_seq: int
    member_count: int
    """Durable members (more than listed when ``--limit`` cut the list)."""
    present_count: int
    """Users present (connected, or resumable) in the room."""
    presence_complete: bool
    """Whether every present user was read (else some members' sessions are not shown)."""
    members: list[MemberRow]


async def _collect(
    ask: Callable[[_C | None, int], Awaitable[tuple[list[_T], _C | None, int]]],
    *,
    limit: int,
    page: int,
) -> tuple[list[_T], int]:
    """Pages of at most ``page`` items (``ask(after, size)`` gives the items, the next
    cursor and the total) until ``limit`` items or the last page; and the first total."""
    items: list[_T] = []
    after: _C | None = None
    total: int | None = None
    while len(items) < limit:
        batch, after, count = await ask(after, min(page, limit - len(items)))
        total = count if total is None else total
        items.extend(batch)
        if after is None or not batch:
            break
    return items[:limit], total or 0


async def user_rooms(
    inbox: Inbox, user_id: str, *, limit: int, page: int = INBOX_PAGE
) -> UserRooms:
    """The user's first ``limit`` rooms, paging through one listing."""

    async def ask(after: str | None, size: int) -> tuple[list[InboxRoom], str | None, int]:
        reply = await inbox(InboxRequest(user_id=user_id, after=after, limit=size))
        return reply.rooms, reply.next, reply.total

    rooms, total = await _collect(ask, limit=limit, page=page)
    return UserRooms(user_id=user_id, total=total, rooms=rooms)


async def room_members(
    members: Members, room_id: str, *, limit: int, page: int = MEMBERS_PAGE
) -> tuple[list[RoomMember], int]:
    """The room's first ``limit`` durable members (by user id) and how many it has."""

    async def ask(after: str | None, size: int) -> tuple[list[RoomMember], str | None, int]:
        reply = await members(RoomMembersRequest(room_id=room_id, after=after, limit=size))
        return reply.members, reply.next, reply.count

    return await _collect(ask, limit=limit, page=page)


async def present_users(
    presence: Presence, room_id: str, *, limit: int, page: int = PRESENCE_PAGE
) -> tuple[list[PresentUser], int]:
    """The room's first ``limit`` present users (in join order) and how many there are."""

    async def ask(after: int | None, size: int) -> tuple[list[PresentUser], int | None, int]:
        reply = await presence(PresenceRequest(room_id=room_id, after=after, limit=size))
        return reply.users, reply.next, reply.total

    return await _collect(ask, limit=limit, page=page)


def roster(
    room_id: str,
    members: list[RoomMember],
    member_count: int,
    present: list[PresentUser],
    present_count: int,
    *,
    last_seq: int,
) -> RoomRoster:
    """Members with their presence (matched by email), then, when every member is listed,
    the users present without being members (a join that did not record a membership)."""
    sessions = {user.email: user.sessions for user in present}
    rows = [
        MemberRow(
            email=m.email,
            user_id=m.user_id,
            role=m.role,
            read_seq=m.read_seq,
            unread=max(0, last_seq - m.read_seq),
            sessions=sessions.get(m.email, []),
        )
        for m in members
    ]
    if len(members) >= member_count:
        emails = {m.email for m in members}
        rows += [
            MemberRow(email=u.email, sessions=u.sessions) for u in present if u.email not in emails
        ]
    return RoomRoster(
        room_id=room_id,
        last_seq=last_seq,
        member_count=member_count,
        present_count=present_count,
        presence_complete=len(present) >= present_count,
        members=rows,
    )
