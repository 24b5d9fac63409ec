"""Durable chat state in memory: a :class:`~chat_history.statestore.ChatStateStore` with the
semantics of :class:`~chat_history.pgstate.PostgresChatStateStore`, for fast tests.

It keeps its members in the rooms of the :class:`~chat_history.memorystore.InMemoryMessageStore`
it is given (as Postgres keeps ``members`` beside ``rooms`` and ``messages``), so that it
sees each room's head, last message and last activity, and an append moves its sender's
watermark. No I/O and no clock; each method runs without yielding to the event loop, so
it is one atomic step, as each of the Postgres store's transactions is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from chat_common.chatstate import (
    InboxResponse,
    InboxRoom,
    MarkReadResponse,
    MarkResult,
    MemberJoinResponse,
    MemberLeaveResponse,
    ReadMark,
    RoomMember,
    RoomMembersResponse,
    UserEvent,
    UserEventsResponse,
    UserRoom,
    UserRoomsResponse,
)
from chat_common.timefmt import iso_ms
from chat_history import statelogic
from chat_history.memorystore import InMemoryMessageStore, MemoryMember, MemoryRoom
from chat_history.statelogic import NewEvent
from chat_history.statestore import (
    EVENTS_KEPT,
    LISTING_TTL,
    ROLE_MEMBER,
    ROLE_OWNER,
    ChatStateStore,
    CursorExpired,
    Written,
)

__all__ = ["InMemoryChatStateStore"]


@dataclass(slots=True)
class _Stream:
    last_seq: int = 0
    events: list[UserEvent] = field(default_factory=list)
    """The kept ones, in seq order."""


@dataclass(frozen=True, slots=True)
class _Listing:
    user_id: str
    rooms: tuple[str, ...]
    created_at: datetime


class InMemoryChatStateStore:
    """:class:`~chat_history.statestore.ChatStateStore` on an in-memory message store's
    rooms."""

    def __init__(
        self,
        messages: InMemoryMessageStore,
        *,
        events_kept: int = EVENTS_KEPT,
        listing_ttl: timedelta = LISTING_TTL,
    ) -> None:
        if events_kept < 1:
            raise ValueError("events_kept must be at least 1")
        self._messages = messages
        self._events_kept = events_kept
        self._listing_ttl = listing_ttl
        self._rooms_of: dict[str, set[str]] = {}
        self._streams: dict[str, _Stream] = {}
        self._listings: dict[str, _Listing] = {}

    def _member(self, user_id: str, room_id: str) -> tuple[MemoryRoom, MemoryMember] | None:
        room = self._messages.rooms.get(room_id)
        member = room.members.get(user_id) if room is not None else None
        return None if room is None or member is None else (room, member)

    def _append(self, user_id: str, new: Sequence[NewEvent]) -> list[UserEvent]:
        stream = self._streams.setdefault(user_id, _Stream())
        added = []
        for event, data in new:
            stream.last_seq += 1
            added.append(UserEvent(user_seq=stream.last_seq, event=event, data=msgspec.Raw(data)))
        stream.events += added
        oldest = stream.last_seq - self._events_kept
        if stream.events and stream.events[0].user_seq <= oldest:
            stream.events = [e for e in stream.events if e.user_seq > oldest]
        return added

    async def join(
        self, user_id: str, email: str, room_id: str, *, now: datetime
    ) -> Written[MemberJoinResponse]:
        room = self._messages.room(room_id)
        member = room.members.get(user_id)
        created = member is None
        if member is None:
            role = ROLE_MEMBER if room.members else ROLE_OWNER
            member = room.members[user_id] = MemoryMember(email, role, room.last_seq, now)
            self._rooms_of.setdefault(user_id, set()).add(room_id)
        answer = MemberJoinResponse(
            role=member.role,
            read_seq=member.read_seq,
            last_seq=room.last_seq,
            unread=room.unread(user_id, member.read_seq),
            created=created,
        )
        if not created:
            return Written(answer)
        event = statelogic.joined_event(room_id, member.role, member.read_seq, room.last_seq)
        return Written(answer, self._append(user_id, [event]))

    async def leave(
        self, user_id: str, room_id: str, *, now: datetime
    ) -> Written[MemberLeaveResponse]:
        found = self._member(user_id, room_id)
        if found is None:
            return Written(MemberLeaveResponse(removed=False))
        del found[0].members[user_id]
        self._rooms_of[user_id].discard(room_id)
        events = self._append(user_id, [statelogic.left_event(room_id)])
        return Written(MemberLeaveResponse(removed=True), events)

    async def mark_read(
        self, user_id: str, marks: Sequence[ReadMark], *, now: datetime
    ) -> Written[MarkReadResponse]:
        results: list[MarkResult] = []
        new: list[NewEvent] = []
        for mark in marks:
            found = self._member(user_id, mark.room_id)
            if found is None:
                results.append(MarkResult(error=statelogic.NOT_MEMBER))
                continue
            room, member = found
            read_seq = statelogic.advance(member.read_seq, mark.seq, room.last_seq)
            state = statelogic.read_state(
                mark.room_id, read_seq, room.last_seq, room.unread(user_id, read_seq)
            )
            if read_seq != member.read_seq:
                member.read_seq = read_seq
                new.append(statelogic.read_state_event(state))
            results.append(MarkResult(state=state))
        return Written(MarkReadResponse(results=results), self._append(user_id, new))

    async def user_events(self, user_id: str, *, after_seq: int, limit: int) -> UserEventsResponse:
        stream = self._streams.get(user_id, _Stream())
        after = [e for e in stream.events if e.user_seq > after_seq]
        first = after[0].user_seq if after else None
        return UserEventsResponse(
            events=after[:limit],
            last_seq=stream.last_seq,
            complete=statelogic.stream_complete(after_seq, stream.last_seq, first),
        )

    async def user_rooms(self, user_id: str, *, limit: int) -> UserRoomsResponse:
        ids = sorted(self._rooms_of.get(user_id, ()))
        rooms = []
        for room_id in ids[:limit]:
            room = self._messages.rooms[room_id]
            read_seq = room.members[user_id].read_seq
            rooms.append(
                UserRoom(
                    room_id=room_id,
                    read_seq=read_seq,
                    last_seq=room.last_seq,
                    unread=room.unread(user_id, read_seq),
                )
            )
        stream = self._streams.get(user_id, _Stream())
        return UserRoomsResponse(rooms=rooms, user_seq=stream.last_seq, truncated=len(ids) > limit)

    def _activity(self, room: MemoryRoom, member: MemoryMember) -> datetime:
        return member.joined_at if room.last_at is None else max(room.last_at, member.joined_at)

    def _inbox_room(self, user_id: str, room_id: str) -> InboxRoom | None:
        found = self._member(user_id, room_id)
        if found is None:
            return None
        room, member = found
        return InboxRoom(
            room_id=room_id,
            role=member.role,
            last_seq=room.last_seq,
            read_seq=member.read_seq,
            unread=room.unread(user_id, member.read_seq),
            last_message=room.last_message(user_id),
            last_activity=iso_ms(self._activity(room, member)),
        )

    def _listing(self, user_id: str, cursor: str, now: datetime) -> tuple[str, _Listing, int]:
        listing_id, offset = statelogic.parse_cursor(cursor)
        listing = self._listings.get(listing_id)
        if (
            listing is None
            or listing.user_id != user_id
            or now >= listing.created_at + self._listing_ttl
        ):
            raise CursorExpired
        return listing_id, listing, offset

    async def inbox(
        self, user_id: str, *, after: str | None, limit: int, now: datetime
    ) -> InboxResponse:
        if after is not None:
            listing_id, listing, offset = self._listing(user_id, after, now)
            ids: Sequence[str] = listing.rooms
        else:
            offset = 0
            by_id = sorted(self._rooms_of.get(user_id, ()))
            activity = {r: self._activity(*self._member_of(user_id, r)) for r in by_id}
            ids = sorted(by_id, key=lambda r: activity[r], reverse=True)  # stable: ties by id
            listing_id = uuid.uuid4().hex
            if len(ids) > limit:
                self._listings = {
                    k: v
                    for k, v in self._listings.items()
                    if now < v.created_at + self._listing_ttl
                }
                self._listings[listing_id] = _Listing(user_id, tuple(ids), now)
        end = offset + limit
        rooms = [self._inbox_room(user_id, r) for r in ids[offset:end]]
        return InboxResponse(
            rooms=[r for r in rooms if r is not None],
            next=statelogic.format_cursor(listing_id, end) if end < len(ids) else None,
            total=len(ids),
        )

    def _member_of(self, user_id: str, room_id: str) -> tuple[MemoryRoom, MemoryMember]:
        room = self._messages.rooms[room_id]
        return room, room.members[user_id]

    async def room_members(
        self, room_id: str, *, after: str | None, limit: int
    ) -> RoomMembersResponse:
        room = self._messages.rooms.get(room_id)
        members = room.members if room is not None else {}
        ids = sorted(u for u in members if after is None or u > after)
        page = [
            RoomMember(user_id=u, email=m.email, role=m.role, read_seq=m.read_seq)
            for u in ids[:limit]
            for m in (members[u],)
        ]
        more = len(ids) > limit
        return RoomMembersResponse(
            members=page, next=page[-1].user_id if more and page else None, count=len(members)
        )


def _conforms(store: InMemoryChatStateStore) -> ChatStateStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member."""
    return store
