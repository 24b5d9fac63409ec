"""Durable chat state: the store interface, in its own terms (no database driver here).

What :mod:`chat_common.chatstate` describes on the bus is kept here: who is a member of
which room (with a role and one read watermark each), each user's event stream, and the
inbox's paging snapshots. :class:`ChatStateStore` is kept by
:class:`~chat_history.pgstate.PostgresChatStateStore` (the service's, in the tables of the
messages) and :class:`~chat_history.memorystate.InMemoryChatStateStore` (on the rooms of
an :class:`~chat_history.memorystore.InMemoryMessageStore`); the contract suite in
``tests/contracts/chat_state_store.py`` holds both to the same answers.

A write that changes what a user sees appends events to that user's stream in its own
transaction and returns them (:class:`Written`): the caller publishes them after the
commit, and a gateway that missed one reads it back with :meth:`ChatStateStore.user_events`.

Rules the implementations share:

* **Owner**: a join to a room without members makes its owner; any other join a member.
  An owner who leaves leaves the room without one (transfers are a later decision).
* **Watermarks** only move forward, and never past the room's head (a mark beyond it is
  not applied at all).
* **Times** are the caller's (``now``): a store has no clock, so that tests decide it.
* **Orders** of user ids and room ids are by code point (``COLLATE "C"`` in Postgres).

Errors::

    chat_common.errors.Unavailable
    └── StoreUnavailable      (chat_history.store) the store cannot serve now; retry later
    chat_common.errors.InvalidArgument
    └── CursorExpired         an inbox cursor that is malformed, unknown or too old
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from chat_common.chatstate import (
    InboxResponse,
    MarkReadResponse,
    MemberJoinResponse,
    MemberLeaveResponse,
    ReadMark,
    RoomMembersResponse,
    UserEvent,
    UserEventsResponse,
    UserRoomsResponse,
)
from chat_common.errors import InvalidArgument

__all__ = [
    "EVENTS_KEPT",
    "LISTING_TTL",
    "ROLE_MEMBER",
    "ROLE_OWNER",
    "ChatStateStore",
    "CursorExpired",
    "Written",
]

ROLE_OWNER = "owner"
ROLE_MEMBER = "member"
EVENTS_KEPT = 1000
"""How many of a user's last events a store keeps by default."""
LISTING_TTL = timedelta(minutes=10)
"""How long an inbox listing's cursor stays valid by default."""

_R = TypeVar("_R")


class CursorExpired(InvalidArgument):
    """An inbox cursor that cannot be followed: malformed, of another user, unknown, or
    older than the listing's lifetime. The caller lists again from the first page."""

    def __init__(self) -> None:
        super().__init__("cursor expired: list again")


@dataclass(frozen=True, slots=True)
class Written(Generic[_R]):
    """A write's answer and the user events its transaction appended (in stream order), to
    be published now that it has committed."""

    result: _R
    events: Sequence[UserEvent] = field(default_factory=tuple)


class ChatStateStore(Protocol):
    """Membership, read state, user streams and inbox listings (see the module docstring).

    Every method is one transaction; each raises
    :class:`~chat_history.store.StoreUnavailable` when trying again may work.
    """

    async def join(
        self, user_id: str, email: str, room_id: str, *, now: datetime
    ) -> Written[MemberJoinResponse]:
        """Make ``user_id`` a member of ``room_id`` (idempotent: a member is answered as
        they are, with no event). A new member's watermark is the room's head; their
        stream gets a ``membership`` event (``member: true``, role, watermark, head)."""
        ...

    async def leave(
        self, user_id: str, room_id: str, *, now: datetime
    ) -> Written[MemberLeaveResponse]:
        """End the membership; when there was one, a ``membership`` event
        (``member: false``)."""
        ...

    async def mark_read(
        self, user_id: str, marks: Sequence[ReadMark], *, now: datetime
    ) -> Written[MarkReadResponse]:
        """Move each mark's watermark to ``max(current, seq)`` (``marks`` name distinct
        rooms); a mark beyond the room's head is not applied. One result per mark, in
        order: the state after it (as it was, for a mark beyond the head), or
        ``NOT_MEMBER``. Each watermark that moved gives a ``read_state`` event."""
        ...

    async def user_events(self, user_id: str, *, after_seq: int, limit: int) -> UserEventsResponse:
        """Up to ``limit`` (at least 1) of the user's kept events after ``after_seq``, and
        the stream's head. ``complete`` is ``False`` when an event after ``after_seq`` is
        no longer kept, or when ``after_seq`` is beyond the head (the stream the caller
        knew is not this one): either way the caller re-reads the state."""
        ...

    async def user_rooms(self, user_id: str, *, limit: int) -> UserRoomsResponse:
        """The user's rooms in room id order (the first ``limit``) with watermark and
        head, and the stream's head, all as of one moment."""
        ...

    async def inbox(
        self, user_id: str, *, after: str | None, limit: int, now: datetime
    ) -> InboxResponse:
        """A page of the user's rooms, most recently active first (activity: the later of
        the room's last message and the user's join; ties by room id), each as it is now.

        The first page (``after`` is ``None``) fixes the listing's order: when it has more
        than ``limit`` rooms, the order is kept, and ``next`` follows it, so that later
        pages repeat and skip nothing while messages arrive. Rooms left since are left
        out; rooms joined since are not in it (their ``membership`` events tell).
        Raises :class:`CursorExpired` for an ``after`` that is malformed, another user's,
        unknown, or from a listing older than the store's listing lifetime.
        """
        ...

    async def room_members(
        self, room_id: str, *, after: str | None, limit: int
    ) -> RoomMembersResponse:
        """A page of the room's members in user id order after the user id ``after``;
        ``next`` is the page's last user id when more follow; ``count`` all of them."""
        ...
