"""What the wire codecs hand to the connection layer, and the helpers they share.

Every codec turns one WebSocket frame into zero or more ``Inbound`` items, or raises
``ProtocolError``:

* ``ClientEvent``: an application event the session logic should handle.
* ``BadEvent``: a well-framed packet whose content is invalid; the connection layer answers
  with an error (an ack when ``ack_id`` is set) and the connection stays up.
* ``NamespaceConnect`` / ``NamespaceDisconnect``: Socket.IO namespace handshakes.
* ``Ping`` / ``Pong`` / ``Noop`` / ``Close``: Engine.IO control packets.
* ``ProtocolError``: the frame cannot be decoded at all; close with ``close_code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

import msgspec

from chat_common.errors import ErrorCode
from chat_gateway.closecodes import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
)

__all__ = [
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
    "EVENT_NAME_RULE",
    "MAX_ACK_ID",
    "MAX_EVENT_NAME_LENGTH",
    "BadEvent",
    "ClientEvent",
    "Close",
    "Inbound",
    "NamespaceConnect",
    "NamespaceDisconnect",
    "Noop",
    "Ping",
    "Pong",
    "ProtocolError",
    "check_frame_size",
    "decode_json",
    "invalid_argument",
    "is_event_name",
]


MAX_ACK_ID = 2**53 - 1
"""Largest ack id accepted or produced: the largest integer a JavaScript number holds exactly."""
MAX_EVENT_NAME_LENGTH = 128
"""Longest event name a codec accepts, in characters."""
EVENT_NAME_RULE = f"event name must be a string of 1 to {MAX_EVENT_NAME_LENGTH} characters"
"""The ``BadEvent`` message for an event name that ``is_event_name`` rejects."""


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """An application event sent by a client; ``data`` is not validated here."""

    name: str
    data: object
    ack_id: int | None


@dataclass(frozen=True, slots=True)
class BadEvent:
    """A well-framed packet whose content is invalid; answer with an error, keep the connection.

    ``message`` is short, safe text that never echoes the payload.
    """

    code: str
    message: str
    event: str | None
    ack_id: int | None


@dataclass(frozen=True, slots=True)
class NamespaceConnect:
    """A Socket.IO CONNECT to ``namespace``; ``auth`` is the optional handshake object."""

    namespace: str
    auth: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class NamespaceDisconnect:
    """A Socket.IO DISCONNECT from ``namespace``."""

    namespace: str


@dataclass(frozen=True, slots=True)
class Ping:
    """An Engine.IO ping from the client (unusual in v4); answer with a pong."""


@dataclass(frozen=True, slots=True)
class Pong:
    """An Engine.IO pong: the client answered the server's ping."""


@dataclass(frozen=True, slots=True)
class Noop:
    """An Engine.IO noop; nothing to do."""


@dataclass(frozen=True, slots=True)
class Close:
    """An Engine.IO close packet: the client ends the session; close the connection."""


Inbound = (
    ClientEvent | BadEvent | NamespaceConnect | NamespaceDisconnect | Ping | Pong | Noop | Close
)
"""Everything a codec may return from ``receive``."""


class ProtocolError(Exception):
    """A frame that cannot be decoded: the connection must be closed with ``close_code``.

    ``reason`` is short ASCII text, fit for a WebSocket close reason (at most 123 bytes).
    """

    def __init__(self, reason: str, *, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


def invalid_argument(message: str, event: str | None, ack_id: int | None) -> BadEvent:
    """A ``BadEvent`` with code ``INVALID_ARGUMENT``."""
    return BadEvent(ErrorCode.INVALID_ARGUMENT.value, message, event, ack_id)


def is_event_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a string of 1 to ``MAX_EVENT_NAME_LENGTH`` characters."""
    return isinstance(name, str) and 0 < len(name) <= MAX_EVENT_NAME_LENGTH


def check_frame_size(frame: str | bytes, max_payload: int) -> None:
    """Raise ``ProtocolError`` (1009) when ``frame`` is longer than ``max_payload`` bytes."""
    size = len(frame)
    if isinstance(frame, str) and size <= max_payload < size * 4:
        try:
            size = len(frame.encode())  # only when the character count cannot decide
        except UnicodeEncodeError:
            raise ProtocolError("text is not valid UTF-8", close_code=CLOSE_INVALID_DATA) from None
    if size > max_payload:
        raise ProtocolError("frame exceeds max payload", close_code=CLOSE_MESSAGE_TOO_BIG)


def decode_json(text: str) -> object:
    """Decode one JSON value, raising ``ProtocolError`` when ``text`` is not valid JSON."""
    try:
        return msgspec.json.decode(text)
    except (ValueError, RecursionError):  # msgspec.DecodeError and UnicodeError are ValueErrors
        raise ProtocolError("invalid JSON") from None
