"""Durable chat state in Postgres: :class:`~chat_history.statestore.ChatStateStore` over the
pool of a :class:`~chat_history.database.Database`, in the tables of the messages.

As :mod:`chat_history.pgstore`: the SQL is in :mod:`chat_history.staterepository`; here,
which errors are worth retrying (:data:`~chat_history.pgstore.TRANSIENT_ERRORS`, raised as
:class:`~chat_history.store.StoreUnavailable` with the driver's error as its cause).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg

from chat_common.chatstate import (
    InboxResponse,
    MarkReadResponse,
    MemberJoinResponse,
    MemberLeaveResponse,
    ReadMark,
    RoomMembersResponse,
    UserEventsResponse,
    UserRoomsResponse,
)
from chat_history import staterepository as sql
from chat_history.database import Database
from chat_history.pgstore import TRANSIENT_ERRORS
from chat_history.statestore import EVENTS_KEPT, LISTING_TTL, ChatStateStore, Written
from chat_history.store import StoreUnavailable

__all__ = ["PostgresChatStateStore"]


class PostgresChatStateStore:
    """:class:`~chat_history.statestore.ChatStateStore` in Postgres.

    ``events_kept``: how many of a user's last events are kept (older ones are deleted by
    the transaction that appends); ``listing_ttl``: how long an inbox cursor works.
    """

    def __init__(
        self,
        db: Database,
        *,
        events_kept: int = EVENTS_KEPT,
        listing_ttl: timedelta = LISTING_TTL,
    ) -> None:
        if events_kept < 1:
            raise ValueError("events_kept must be at least 1")
        self._db = db
        self._keep = events_kept
        self._ttl = listing_ttl

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._db.acquire() as conn:
                yield conn
        except TRANSIENT_ERRORS as exc:
            raise StoreUnavailable("chat state store unavailable") from exc

    async def join(
        self, user_id: str, email: str, room_id: str, *, now: datetime
    ) -> Written[MemberJoinResponse]:
        async with self._conn() as conn:
            answer, events = await sql.join(conn, user_id, email, room_id, now, self._keep)
        return Written(answer, events)

    async def leave(
        self, user_id: str, room_id: str, *, now: datetime
    ) -> Written[MemberLeaveResponse]:
        async with self._conn() as conn:
            answer, events = await sql.leave(conn, user_id, room_id, now, self._keep)
        return Written(answer, events)

    async def mark_read(
        self, user_id: str, marks: Sequence[ReadMark], *, now: datetime
    ) -> Written[MarkReadResponse]:
        async with self._conn() as conn:
            answer, events = await sql.mark_read(conn, user_id, marks, now, self._keep)
        return Written(answer, events)

    async def user_events(self, user_id: str, *, after_seq: int, limit: int) -> UserEventsResponse:
        async with self._conn() as conn:
            return await sql.user_events(conn, user_id, after_seq, limit)

    async def user_rooms(self, user_id: str, *, limit: int) -> UserRoomsResponse:
        async with self._conn() as conn:
            return await sql.user_rooms(conn, user_id, limit)

    async def inbox(
        self, user_id: str, *, after: str | None, limit: int, now: datetime
    ) -> InboxResponse:
        async with self._conn() as conn:
            if after is None:
                listing = uuid.uuid4().hex
                return await sql.inbox_first(conn, user_id, limit, now, self._ttl, listing)
            return await sql.inbox_next(conn, user_id, after, limit, now, self._ttl)

    async def room_members(
        self, room_id: str, *, after: str | None, limit: int
    ) -> RoomMembersResponse:
        async with self._conn() as conn:
            return await sql.room_members(conn, room_id, after, limit)


def _conforms(store: PostgresChatStateStore) -> ChatStateStore:
    """Never called: mypy checks this return, so a signature that drifts from the
    interface fails ``make lint`` here, naming the member."""
    return store
