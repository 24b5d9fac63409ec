"""Client event payloads and their validation (pure).

``chat_common.schemas.parse_value`` turns a payload that does not fit into
``INVALID_ARGUMENT`` with a message naming the field, never echoing the value.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from chat_common.schemas import MAX_SEQ, Email, MessageText, RoomId, Wire

__all__ = [
    "DeleteMessagePayload",
    "EditMessagePayload",
    "GetHistoryPayload",
    "GetRoomsPayload",
    "JoinPayload",
    "LeavePayload",
    "MarkReadPayload",
    "ReactPayload",
    "ResumePayload",
    "SendMessagePayload",
    "TypingPayload",
    "UnsubscribePayload",
]

ClientMsgId = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]{1,128}\Z")]
"""1 to 128 characters, none of them a control character (it is stored and shown)."""
_OPAQUE = r"^[A-Za-z0-9_-]{1,%d}\Z"
"""Session ids and resume tokens: what the gateway hands out, within a bound."""


class JoinPayload(Wire, frozen=True):
    email: Email
    room_id: RoomId


class SendMessagePayload(Wire, frozen=True):
    room_id: RoomId
    text: MessageText
    client_msg_id: ClientMsgId | None = None


class GetHistoryPayload(Wire, frozen=True):
    room_id: RoomId
    before_seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)] | None = None
    after_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    """The room's events after this seq (messages and changes, as the live stream carried
    them) instead of its messages as they are now."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None


TargetSeq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
"""The seq of the message a change is to."""
Emoji = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
"""A reaction; what it may hold is checked by ``chat_common.changes.valid_emoji``."""


class EditMessagePayload(Wire, frozen=True):
    room_id: RoomId
    seq: TargetSeq
    text: MessageText
    client_msg_id: ClientMsgId | None = None


class DeleteMessagePayload(Wire, frozen=True):
    room_id: RoomId
    seq: TargetSeq
    client_msg_id: ClientMsgId | None = None


class ReactPayload(Wire, frozen=True):
    """``react`` and ``unreact``."""

    room_id: RoomId
    seq: TargetSeq
    emoji: Emoji
    client_msg_id: ClientMsgId | None = None


class GetMembersPayload(Wire, frozen=True):
    room_id: RoomId
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    """The ``next`` of the page before (a position in the room's join order)."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


class LeavePayload(Wire, frozen=True):
    room_id: RoomId


class ResumePayload(Wire, frozen=True):
    session_id: Annotated[str, msgspec.Meta(pattern=_OPAQUE % 64)]
    resume_token: Annotated[str, msgspec.Meta(pattern=_OPAQUE % 128)]
    last_seq: Annotated[
        dict[RoomId, Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]], msgspec.Meta(max_length=1000)
    ] = {}


class MarkReadPayload(Wire, frozen=True):
    room_id: RoomId
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]


class GetRoomsPayload(Wire, frozen=True):
    after: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """The ``next`` of the page before."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None
    follow: bool | None = None
    """The first page (no ``after``) makes the connection follow its inbox, unless this is
    ``False`` (``null`` is the same as absent, as for every optional key)."""
    email: Email | None = None
    """Development mode: who this connection is, when it has not joined a room yet."""


class UnsubscribePayload(Wire, frozen=True):
    room_id: RoomId


class TypingPayload(Wire, frozen=True):
    room_id: RoomId
    typing: bool
    """``true``: started or still typing (renew every 3 s); ``false``: stopped."""
