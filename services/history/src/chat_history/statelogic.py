"""The arithmetic of durable chat state, without I/O: what both chat state stores compute
the same way (watermarks, events' data, inbox cursors, whether a stream is complete)."""

from __future__ import annotations

import re

from chat_common.chatstate import MembershipChange, ReadState
from chat_common.errors import ErrorCode
from chat_common.schemas import ItemError, encode
from chat_history.statestore import CursorExpired

__all__ = [
    "MEMBERSHIP",
    "NOT_MEMBER",
    "READ_STATE",
    "NewEvent",
    "advance",
    "format_cursor",
    "joined_event",
    "left_event",
    "parse_cursor",
    "read_state",
    "read_state_event",
    "stream_complete",
]

READ_STATE = "read_state"
MEMBERSHIP = "membership"

NOT_MEMBER = ItemError(code=ErrorCode.NOT_MEMBER.value, message="not a member of the room")
"""A mark's error for a room the user is not a member of."""

NewEvent = tuple[str, bytes]
"""(event, data JSON) of a user event before it has its seq."""


def advance(read_seq: int, seq: int, last_seq: int) -> int:
    """A watermark after a mark at ``seq``: forward only; a mark beyond the head is not
    applied (the caller refuses it, and a refused mark changes nothing)."""
    return read_seq if seq > last_seq else max(read_seq, seq)


def read_state(room_id: str, read_seq: int, last_seq: int, unread: int) -> ReadState:
    """A member's read state; ``unread`` is the messages after the watermark that others
    sent and nobody deleted (changes are not counted)."""
    return ReadState(room_id=room_id, read_seq=read_seq, last_seq=last_seq, unread=unread)


def read_state_event(state: ReadState) -> NewEvent:
    return READ_STATE, encode(state)


def joined_event(room_id: str, role: str, read_seq: int, last_seq: int) -> NewEvent:
    change = MembershipChange(
        room_id=room_id, member=True, role=role, read_seq=read_seq, last_seq=last_seq
    )
    return MEMBERSHIP, encode(change)


def left_event(room_id: str) -> NewEvent:
    return MEMBERSHIP, encode(MembershipChange(room_id=room_id, member=False))


def stream_complete(after_seq: int, last_seq: int, first_kept: int | None) -> bool:
    """Whether the events after ``after_seq`` are all there, given the stream's head and
    the first kept seq after ``after_seq`` (``None``: none kept). An ``after_seq`` beyond
    the head is not: the caller knew another stream (a restored database)."""
    if after_seq >= last_seq:
        return after_seq == last_seq
    return first_kept == after_seq + 1


def format_cursor(listing_id: str, offset: int) -> str:
    """An inbox cursor: the listing and how many of its rooms the pages so far held."""
    return f"{listing_id}:{offset}"


_CURSOR = re.compile(r"([0-9a-f]{32}):([0-9]{1,9})")
"""What :func:`format_cursor` makes of a store's listing id (``uuid4().hex``)."""


def parse_cursor(cursor: str) -> tuple[str, int]:
    """(listing id, offset) of a cursor of :func:`format_cursor`; :class:`CursorExpired`
    for anything else (checked here, so that no client's text reaches a query: Postgres
    refuses a NUL in text with an error of its own)."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise CursorExpired
    return match[1], int(match[2])
