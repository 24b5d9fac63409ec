"""SQL of durable chat state (tables of ``0002_chat_state.sql``); every function takes a
connection, runs one transaction (or one statement) and does no retrying.

Locks, taken in one order so that these transactions do not deadlock each other:

* a join locks its room's row (an upsert of ``rooms``), then writes ``members``, then the
  user's ``user_streams`` row; so two first joins of a room queue, and one is the owner;
* a mark locks the user's ``members`` rows of its rooms in room order, then reads the heads
  (a statement after the lock, so it sees every commit before it), then the stream's row;
* an append (``repository.append_batch``) locks its rooms in room order, then the senders'
  ``members`` rows. A mark and an append of the same user over several rooms may still
  meet in the other order; Postgres then aborts one (``DeadlockDetectedError``), which is
  transient: the writer retries its batch, a mark answers ``UNAVAILABLE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
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
from chat_history.repository import to_message
from chat_history.statelogic import NewEvent
from chat_history.statestore import ROLE_MEMBER, ROLE_OWNER, CursorExpired

__all__ = [
    "inbox_first",
    "inbox_next",
    "join",
    "leave",
    "mark_read",
    "room_members",
    "user_events",
    "user_rooms",
]


def _unread(member: str, room: str) -> str:
    """SQL of the unread count of ``member`` (a ``members`` row) in ``room`` (its
    ``rooms`` row): the messages after the watermark that others sent and nobody deleted
    (changes are not messages). Counted, not kept: no counter to drift; one index probe
    when nothing is unread."""
    return f"""CASE WHEN {member}.read_seq >= {room}.last_seq THEN 0 ELSE (
        SELECT count(*) FROM messages x
        WHERE x.room_id = {member}.room_id AND x.seq > {member}.read_seq AND x.kind = 'message'
          AND x.deleted_at IS NULL AND x.sender <> {member}.user_id) END"""


_MEMBERSHIP = f"""
SELECT m.role, m.read_seq, r.last_seq, {_unread("m", "r")} AS unread
FROM members m JOIN rooms r USING (room_id)
WHERE m.user_id = $1 AND m.room_id = $2
"""

_LOCK_ROOM = """
INSERT INTO rooms AS r (room_id, last_seq) VALUES ($1, 0)
ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq
RETURNING r.last_seq
"""

_ADD_MEMBER = f"""
INSERT INTO members (user_id, room_id, email, role, read_seq, joined_at)
SELECT $1, $2, $3,
       CASE WHEN EXISTS (SELECT 1 FROM members WHERE room_id = $2)
            THEN '{ROLE_MEMBER}' ELSE '{ROLE_OWNER}' END,
       $4, $5
ON CONFLICT (user_id, room_id) DO NOTHING
RETURNING role
"""

_REMOVE_MEMBER = "DELETE FROM members WHERE user_id = $1 AND room_id = $2"

_APPEND_EVENTS = """
WITH head AS (
    INSERT INTO user_streams AS s (user_id, last_seq) VALUES ($1, cardinality($2::text[]))
    ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + EXCLUDED.last_seq
    RETURNING s.last_seq
),
added AS (
    INSERT INTO user_events (user_id, seq, event, data, created_at)
    SELECT $1, head.last_seq - cardinality($2::text[]) + e.ord, e.event, e.data, $4
    FROM head, unnest($2::text[], $3::text[]) WITH ORDINALITY AS e(event, data, ord)
    WHERE e.ord > cardinality($2::text[]) - $5
),
pruned AS (
    DELETE FROM user_events WHERE user_id = $1 AND seq <= (SELECT last_seq FROM head) - $5
)
SELECT last_seq FROM head
"""

_LOCK_MARKED = """
SELECT room_id FROM members WHERE user_id = $1 AND room_id = ANY($2::text[])
ORDER BY room_id COLLATE "C" FOR UPDATE
"""

_MARK = """
WITH k AS (
    SELECT * FROM unnest($2::text[], $3::bigint[]) AS k(room_id, seq)
),
cur AS (
    SELECT m.room_id, m.read_seq AS old, r.last_seq,
           CASE WHEN k.seq > r.last_seq THEN m.read_seq
                ELSE greatest(m.read_seq, k.seq) END AS new
    FROM members m JOIN k USING (room_id) JOIN rooms r USING (room_id)
    WHERE m.user_id = $1
),
moved AS (
    UPDATE members m SET read_seq = cur.new FROM cur
    WHERE m.user_id = $1 AND m.room_id = cur.room_id AND cur.new > cur.old
)
SELECT room_id, old, new, last_seq, CASE WHEN new >= last_seq THEN 0 ELSE (
    SELECT count(*) FROM messages x
    WHERE x.room_id = cur.room_id AND x.seq > cur.new AND x.kind = 'message'
      AND x.deleted_at IS NULL AND x.sender <> $1) END AS unread
FROM cur
"""

_USER_EVENTS = """
SELECT s.last_seq, e.seq, e.event, e.data
FROM (SELECT coalesce((SELECT last_seq FROM user_streams WHERE user_id = $1), 0) AS last_seq) s
LEFT JOIN LATERAL (
    SELECT seq, event, data FROM user_events WHERE user_id = $1 AND seq > $2
    ORDER BY seq LIMIT $3
) e ON true
"""

_USER_ROOMS = f"""
SELECT s.user_seq, x.room_id, x.read_seq, x.last_seq, x.unread
FROM (SELECT coalesce((SELECT last_seq FROM user_streams WHERE user_id = $1), 0) AS user_seq) s
LEFT JOIN LATERAL (
    SELECT m.room_id, m.read_seq, r.last_seq, {_unread("m", "r")} AS unread
    FROM members m JOIN rooms r USING (room_id)
    WHERE m.user_id = $1
    ORDER BY m.room_id COLLATE "C" LIMIT $2 + 1
) x ON true
"""

_INBOX_ORDER = """
SELECT m.room_id
FROM members m JOIN rooms r USING (room_id)
WHERE m.user_id = $1
ORDER BY greatest(r.last_at, m.joined_at) DESC, m.room_id COLLATE "C"
"""

_INBOX_ROOMS = f"""
SELECT u.room_id, m.role, m.read_seq, r.last_seq, {_unread("m", "r")} AS unread,
       greatest(r.last_at, m.joined_at) AS activity,
       msg.seq, msg.id, msg.email, msg.body, msg.client_msg_id, msg.client_supplied,
       msg.created_at, msg.edited_at, msg.deleted
FROM unnest($2::text[]) WITH ORDINALITY AS u(room_id, ord)
JOIN members m ON m.user_id = $1 AND m.room_id = u.room_id
JOIN rooms r ON r.room_id = u.room_id
LEFT JOIN LATERAL (
    SELECT seq, id, email, client_msg_id, client_supplied, created_at, edited_at,
           CASE WHEN deleted_at IS NULL THEN coalesce(edited_body, body) ELSE '' END AS body,
           deleted_at IS NOT NULL AS deleted
    FROM messages WHERE room_id = u.room_id AND kind = 'message'
    ORDER BY seq DESC LIMIT 1
) msg ON true
ORDER BY u.ord
"""

_DROP_EXPIRED_LISTINGS = "DELETE FROM inbox_listings WHERE created_at <= $1"
_ADD_LISTING = "INSERT INTO inbox_listings (id, user_id, rooms, created_at) VALUES ($1, $2, $3, $4)"
_LISTING_SLICE = """
SELECT rooms[$3 + 1 : $3 + $4] AS page, cardinality(rooms) AS total
FROM inbox_listings WHERE id = $1 AND user_id = $2 AND created_at > $5
"""

_ROOM_MEMBERS = """
SELECT c.count, x.user_id, x.email, x.role, x.read_seq
FROM (SELECT count(*) AS count FROM members WHERE room_id = $1) c
LEFT JOIN LATERAL (
    SELECT user_id, email, role, read_seq FROM members
    WHERE room_id = $1 AND ($2::text IS NULL OR user_id COLLATE "C" > $2)
    ORDER BY user_id COLLATE "C" LIMIT $3 + 1
) x ON true
"""


async def _append_events(
    conn: asyncpg.Connection, user_id: str, new: Sequence[NewEvent], now: datetime, keep: int
) -> list[UserEvent]:
    """Append ``new`` to the user's stream (locking its head row) and drop what falls out
    of the last ``keep``; the events with their seqs."""
    if not new:
        return []
    names = [event for event, _ in new]
    datas = [data.decode() for _, data in new]
    last = int(await conn.fetchval(_APPEND_EVENTS, user_id, names, datas, now, keep))
    first = last - len(new) + 1
    return [
        UserEvent(user_seq=first + i, event=event, data=msgspec.Raw(data))
        for i, (event, data) in enumerate(new)
    ]


async def join(
    conn: asyncpg.Connection, user_id: str, email: str, room_id: str, now: datetime, keep: int
) -> tuple[MemberJoinResponse, list[UserEvent]]:
    """Make the user a member (see ``ChatStateStore.join``): the room's row is locked
    before members are counted, so that of two first joins one is the owner."""
    row = await conn.fetchrow(_MEMBERSHIP, user_id, room_id)
    if row is None:
        async with conn.transaction():
            last_seq = int(await conn.fetchval(_LOCK_ROOM, room_id))
            role = await conn.fetchval(_ADD_MEMBER, user_id, room_id, email, last_seq, now)
            if role is not None:
                event = statelogic.joined_event(room_id, role, last_seq, last_seq)
                events = await _append_events(conn, user_id, [event], now, keep)
                answer = MemberJoinResponse(
                    role=role, read_seq=last_seq, last_seq=last_seq, unread=0, created=True
                )
                return answer, events
        row = await conn.fetchrow(_MEMBERSHIP, user_id, room_id)  # a concurrent join's
        assert row is not None
    answer = MemberJoinResponse(
        role=row["role"],
        read_seq=int(row["read_seq"]),
        last_seq=int(row["last_seq"]),
        unread=int(row["unread"]),
        created=False,
    )
    return answer, []


async def leave(
    conn: asyncpg.Connection, user_id: str, room_id: str, now: datetime, keep: int
) -> tuple[MemberLeaveResponse, list[UserEvent]]:
    """End the membership, and tell the user's stream if there was one."""
    async with conn.transaction():
        status = await conn.execute(_REMOVE_MEMBER, user_id, room_id)
        if status != "DELETE 1":
            return MemberLeaveResponse(removed=False), []
        events = await _append_events(conn, user_id, [statelogic.left_event(room_id)], now, keep)
    return MemberLeaveResponse(removed=True), events


async def mark_read(
    conn: asyncpg.Connection, user_id: str, marks: Sequence[ReadMark], now: datetime, keep: int
) -> tuple[MarkReadResponse, list[UserEvent]]:
    """Move watermarks (see ``ChatStateStore.mark_read``) in one transaction: lock the
    user's rows of these rooms, then move them against the heads as they are then."""
    rooms = [m.room_id for m in marks]
    async with conn.transaction():
        await conn.execute(_LOCK_MARKED, user_id, rooms)
        rows = await conn.fetch(_MARK, user_id, rooms, [m.seq for m in marks])
        found = {r["room_id"]: r for r in rows}
        results: list[MarkResult] = []
        new: list[NewEvent] = []
        for mark in marks:
            row = found.get(mark.room_id)
            if row is None:
                results.append(MarkResult(error=statelogic.NOT_MEMBER))
                continue
            state = statelogic.read_state(
                mark.room_id, int(row["new"]), int(row["last_seq"]), int(row["unread"])
            )
            if row["new"] != row["old"]:
                new.append(statelogic.read_state_event(state))
            results.append(MarkResult(state=state))
        events = await _append_events(conn, user_id, new, now, keep)
    return MarkReadResponse(results=results), events


async def user_events(
    conn: asyncpg.Connection, user_id: str, after_seq: int, limit: int
) -> UserEventsResponse:
    """The kept events after ``after_seq`` and the stream's head, in one statement."""
    rows = await conn.fetch(_USER_EVENTS, user_id, after_seq, limit)
    last_seq = int(rows[0]["last_seq"])
    events = [
        UserEvent(user_seq=r["seq"], event=r["event"], data=msgspec.Raw(r["data"].encode()))
        for r in rows
        if r["seq"] is not None
    ]
    first = events[0].user_seq if events else None
    return UserEventsResponse(
        events=events,
        last_seq=last_seq,
        complete=statelogic.stream_complete(after_seq, last_seq, first),
    )


async def user_rooms(conn: asyncpg.Connection, user_id: str, limit: int) -> UserRoomsResponse:
    """The user's rooms and the stream's head, in one statement (one snapshot)."""
    rows = await conn.fetch(_USER_ROOMS, user_id, limit)
    found = [r for r in rows if r["room_id"] is not None]
    return UserRoomsResponse(
        rooms=[
            UserRoom(
                room_id=r["room_id"],
                read_seq=r["read_seq"],
                last_seq=r["last_seq"],
                unread=r["unread"],
            )
            for r in found[:limit]
        ],
        user_seq=int(rows[0]["user_seq"]),
        truncated=len(found) > limit,
    )


def _inbox_room(row: asyncpg.Record) -> InboxRoom:
    message = to_message(row) if row["id"] is not None else None
    return InboxRoom(
        room_id=row["room_id"],
        role=row["role"],
        last_seq=row["last_seq"],
        read_seq=row["read_seq"],
        unread=row["unread"],
        last_message=message,
        last_activity=iso_ms(row["activity"]),
    )


async def _inbox_rooms(
    conn: asyncpg.Connection, user_id: str, room_ids: Sequence[str]
) -> list[InboxRoom]:
    """The rooms (those the user is still a member of) as they are now, in that order."""
    if not room_ids:
        return []
    return [_inbox_room(r) for r in await conn.fetch(_INBOX_ROOMS, user_id, list(room_ids))]


async def inbox_first(
    conn: asyncpg.Connection,
    user_id: str,
    limit: int,
    now: datetime,
    ttl: timedelta,
    listing_id: str,
) -> InboxResponse:
    """A listing's first page; its order is stored as ``listing_id`` when more pages
    follow (the expired listings of everyone are dropped then)."""
    async with conn.transaction():
        ids = [r["room_id"] for r in await conn.fetch(_INBOX_ORDER, user_id)]
        more = len(ids) > limit
        if more:
            await conn.execute(_DROP_EXPIRED_LISTINGS, now - ttl)
            await conn.execute(_ADD_LISTING, listing_id, user_id, ids, now)
        rooms = await _inbox_rooms(conn, user_id, ids[:limit])
    cursor = statelogic.format_cursor(listing_id, limit) if more else None
    return InboxResponse(rooms=rooms, next=cursor, total=len(ids))


async def inbox_next(
    conn: asyncpg.Connection, user_id: str, cursor: str, limit: int, now: datetime, ttl: timedelta
) -> InboxResponse:
    """A later page of a stored listing; :class:`CursorExpired` when there is none."""
    listing_id, offset = statelogic.parse_cursor(cursor)
    row = await conn.fetchrow(_LISTING_SLICE, listing_id, user_id, offset, limit, now - ttl)
    if row is None:
        raise CursorExpired
    total = int(row["total"])
    rooms = await _inbox_rooms(conn, user_id, row["page"] or [])
    end = offset + limit
    cursor_next = statelogic.format_cursor(listing_id, end) if end < total else None
    return InboxResponse(rooms=rooms, next=cursor_next, total=total)


async def room_members(
    conn: asyncpg.Connection, room_id: str, after: str | None, limit: int
) -> RoomMembersResponse:
    """A page of members in user id order and their count, in one statement."""
    rows = await conn.fetch(_ROOM_MEMBERS, room_id, after, limit)
    found = [r for r in rows if r["user_id"] is not None]
    page = [
        RoomMember(user_id=r["user_id"], email=r["email"], role=r["role"], read_seq=r["read_seq"])
        for r in found[:limit]
    ]
    more = len(found) > limit
    return RoomMembersResponse(
        members=page,
        next=page[-1].user_id if more and page else None,
        count=int(rows[0]["count"]),
    )
