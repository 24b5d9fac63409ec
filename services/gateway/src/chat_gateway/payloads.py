"""Client event payloads and their validation (pure).

``chat_common.schemas.parse_value`` turns a payload that does not fit into
``INVALID_ARGUMENT`` with a message naming the field, never echoing the value.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from chat_common.schemas import MAX_SEQ, Email, MessageText, RoomId, Wire

__all__ = [
    "GetHistoryPayload",
    "GetRoomsPayload",
    "JoinPayload",
    "LeavePayload",
    "MarkReadPayload",
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
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None


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
