"""Client event payloads and their validation (pure).

Any payload that does not fit becomes ``INVALID_ARGUMENT`` with a message naming the field,
never echoing the value.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec

from chat_common.errors import InvalidArgument
from chat_common.schemas import MAX_SEQ, Email, MessageText, RoomId

__all__ = [
    "GetHistoryPayload",
    "JoinPayload",
    "LeavePayload",
    "ResumePayload",
    "SendMessagePayload",
    "parse_payload",
]

_T = TypeVar("_T")
ClientMsgId = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]{1,128}\Z")]
"""1 to 128 characters, none of them a control character (it is stored and shown)."""
_OPAQUE = r"^[A-Za-z0-9_-]{1,%d}\Z"
"""Session ids and resume tokens: what the gateway hands out, within a bound."""


class _Payload(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """Base: unknown fields are ignored, known ones are type-checked strictly."""


class JoinPayload(_Payload, frozen=True):
    email: Email
    room_id: RoomId


class SendMessagePayload(_Payload, frozen=True):
    room_id: RoomId
    text: MessageText
    client_msg_id: ClientMsgId | None = None


class GetHistoryPayload(_Payload, frozen=True):
    room_id: RoomId
    before_seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None


class GetMembersPayload(_Payload, frozen=True):
    room_id: RoomId
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    """The ``next`` of the page before (a position in the room's join order)."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None


class LeavePayload(_Payload, frozen=True):
    room_id: RoomId


class ResumePayload(_Payload, frozen=True):
    session_id: Annotated[str, msgspec.Meta(pattern=_OPAQUE % 64)]
    resume_token: Annotated[str, msgspec.Meta(pattern=_OPAQUE % 128)]
    last_seq: Annotated[
        dict[RoomId, Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]], msgspec.Meta(max_length=1000)
    ] = {}


def parse_payload(data: object, kind: type[_T]) -> _T:
    """Convert a decoded JSON value into ``kind`` or raise ``INVALID_ARGUMENT``."""
    if not isinstance(data, dict):
        raise InvalidArgument("payload must be an object")
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(_safe(str(exc))) from None


def _safe(detail: str) -> str:
    # msgspec messages name the expectation and the path ("... - at `$.roomId`"),
    # never the value; strip the regex to keep them short.
    head, _, path = detail.partition(" - at ")
    if "matching regex" in head:
        head = "Invalid characters" if path.endswith(".text`") else "Invalid format"
    return f"{head} at {path.replace('$.', '')}" if path else head
