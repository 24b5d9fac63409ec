"""Durable chat state on the bus: membership, read state, the inbox and the user stream.

The history service owns this state (in Postgres, beside the messages: unread counts are
arithmetic on the same room heads, in the same transaction). The gateway asks for it with
these requests (``chat.history.<endpoint>``) and hears what changed on each user's stream
(``chat.user.<user token>.events``, :func:`chat_common.subjects.user_events`).

* **User id** (:data:`UserId`): the token's ``sub``; in development mode the email. It is
  how the stores and the bus know a user; the email stays what others see.
* **Read state** is one watermark per (user, room): ``readSeq``, the last seq the user has
  read; it only ever moves forward. ``unread = lastSeq - readSeq``. Sending a message moves
  the sender's watermark to it (the sender has read everything up to what they answered).
* **User stream**: events numbered per user (``userSeq``, 1, 2, 3... without gaps), kept
  for a while in history so that a gateway can fill a gap and a client can catch up.
  Events: ``read_state`` (:class:`ReadState`) and ``membership`` (:class:`MembershipChange`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from chat_common.schemas import Email, ItemError, Message, RoomId, Seq, Wire

__all__ = [
    "MAX_MARKS",
    "MAX_USER_ID_LENGTH",
    "USER_ID_PATTERN",
    "InboxRequest",
    "InboxResponse",
    "InboxRoom",
    "MarkReadRequest",
    "MarkReadResponse",
    "MarkResult",
    "MemberJoinRequest",
    "MemberJoinResponse",
    "MemberLeaveRequest",
    "MemberLeaveResponse",
    "MembershipChange",
    "ReadMark",
    "ReadState",
    "RoomMember",
    "RoomMembersRequest",
    "RoomMembersResponse",
    "UserEvent",
    "UserEventsRequest",
    "UserEventsResponse",
    "UserId",
    "UserRoom",
    "UserRoomsRequest",
    "UserRoomsResponse",
]

MAX_USER_ID_LENGTH = 255
USER_ID_PATTERN = r"^[^\x00-\x1f\x7f]+\Z"
"""Any text but control characters (a token's ``sub`` is free-form; it never becomes a
subject token as it is: subjects carry its hash)."""
MAX_MARKS = 100
"""The most marks one :class:`MarkReadRequest` carries."""

UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_USER_ID_LENGTH,
                                     pattern=USER_ID_PATTERN)]  # fmt: skip


class MemberJoinRequest(Wire, frozen=True):
    """Make ``user_id`` a member of ``room_id`` (idempotent). The first member of a room is
    its owner; a new member's watermark starts at the room's head (nothing unread)."""

    user_id: UserId
    email: Email
    room_id: RoomId


class MemberJoinResponse(Wire, frozen=True):
    role: str
    """``owner`` or ``member``."""
    read_seq: int
    last_seq: int
    unread: int
    created: bool
    """Whether this request made the user a member (``False``: already one)."""


class MemberLeaveRequest(Wire, frozen=True):
    """End ``user_id``'s membership of ``room_id`` for good (``unsubscribe``)."""

    user_id: UserId
    room_id: RoomId


class MemberLeaveResponse(Wire, frozen=True):
    removed: bool
    """``False``: the user was not a member."""


class ReadMark(Wire, frozen=True):
    room_id: RoomId
    seq: Seq


class MarkReadRequest(Wire, frozen=True):
    """Move the user's watermarks forward: each to ``max(current, seq)``. A mark beyond the
    room's head is not applied (the result's state is as it was, and its ``lastSeq`` below
    the mark says why): a client's mark there is refused, and a refusal changes nothing."""

    user_id: UserId
    marks: list[ReadMark]
    """Distinct rooms, at most :data:`MAX_MARKS`."""


class ReadState(Wire, frozen=True):
    """A user's read state in one room; also the ``read_state`` event's data."""

    room_id: str
    read_seq: int
    last_seq: int
    unread: int


class MarkResult(Wire, frozen=True):
    """One mark's outcome: the state after it, or why it was refused (``NOT_MEMBER``)."""

    state: ReadState | None = None
    error: ItemError | None = None


class MarkReadResponse(Wire, frozen=True):
    results: list[MarkResult]
    """One per mark, in the same order."""


class MembershipChange(Wire, frozen=True, omit_defaults=True):
    """The ``membership`` event's data: the user joined (``member``) or left a room. The
    fields of a join are absent from a leave's (``{"roomId","member":false}``), as
    docs/protocol.md 4.13 shows them (``"role"?``), not ``null``."""

    room_id: str
    member: bool
    role: str | None = None
    read_seq: int | None = None
    """A new member's watermark (the room's head when they joined)."""
    last_seq: int | None = None
    """The room's head when they joined."""


class InboxRequest(Wire, frozen=True):
    """A page of the user's rooms, most recently active first. ``after`` is the previous
    page's ``next``: the pages of one listing follow the order of its first page, so they
    repeat and skip nothing while messages arrive (rooms joined since come as events, rooms
    left since are left out). A listing's cursors work for 10 minutes; after that (or for a
    cursor that is not one) the answer is ``INVALID_ARGUMENT`` "cursor expired: list
    again"."""

    user_id: UserId
    after: str | None = None
    limit: int = 50


class InboxRoom(Wire, frozen=True):
    room_id: str
    role: str
    last_seq: int
    read_seq: int
    unread: int
    last_message: Message | None
    last_activity: str
    """ISO-8601 UTC: the last message's time, or the join's for a room without one."""


class InboxResponse(Wire, frozen=True):
    rooms: list[InboxRoom]
    next: str | None
    """``after`` of the next page; ``None`` after the last."""
    total: int
    """How many rooms the listing has."""


class UserRoomsRequest(Wire, frozen=True):
    """Every room of a user with its watermark and head (the gateway's inbox index)."""

    user_id: UserId
    limit: int = 10_000


class UserRoom(Wire, frozen=True):
    room_id: str
    read_seq: int
    last_seq: int
    unread: int = 0
    """Messages after ``read_seq`` that others sent and nobody deleted."""


class UserRoomsResponse(Wire, frozen=True):
    rooms: list[UserRoom]
    user_seq: int
    """The user stream's head when the list was read: events after it are newer."""
    truncated: bool


class UserEvent(Wire, frozen=True):
    """One event of a user's stream, as published on ``chat.user.<token>.events`` and as
    kept for catching up."""

    user_seq: int
    event: str
    """``read_state`` or ``membership``."""
    data: msgspec.Raw


class UserEventsRequest(Wire, frozen=True):
    """The user's events after ``after_seq`` (a gap, or a client catching up)."""

    user_id: UserId
    after_seq: Seq
    limit: int = 100


class UserEventsResponse(Wire, frozen=True):
    events: list[UserEvent]
    last_seq: int
    """The stream's head."""
    complete: bool
    """``False`` when events after ``after_seq`` are no longer kept, or when ``after_seq``
    is beyond the stream's head (the stream the caller knew is gone: a restored database);
    either way the caller re-reads the state (``user_rooms``) instead."""


class RoomMembersRequest(Wire, frozen=True):
    """A page of a room's durable members in user id order (operators, ``chatctl``)."""

    room_id: RoomId
    after: str | None = None
    limit: int = 100


class RoomMember(Wire, frozen=True):
    user_id: str
    email: str
    role: str
    read_seq: int


class RoomMembersResponse(Wire, frozen=True):
    members: list[RoomMember]
    next: str | None
    count: int
