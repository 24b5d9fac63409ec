"""What reaches a room's subscribers at a gateway, decoded once (pure).

A gateway listens to both of a room's subjects with one subscription: messages on
``chat.room.<room>.events`` (one publish per commit, carrying all of the room's messages
it stored; only history may publish there) and presence on ``chat.room.<room>.presence``
(only the session service may). Each subject carries only its own kind of event: a
``new_message`` on the presence subject, or presence on the message subject, is dropped,
so each has exactly one publisher the bus lets speak there. (The room's third subject,
typing, goes to :mod:`chat_gateway.rooms.typingfanout`.)

Each event becomes one :class:`Fanout`, whose frame bytes are built once per kind of
client (:func:`chat_gateway.rooms.frames.frame_for`). A message read back from history
(a gap fill, a resume replay, a catch-up page) becomes one with :func:`page_item`, so it is
encoded exactly as its live copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from chat_common.schemas import Message, RoomEvent, RoomMessages, encode
from chat_common.subjects import ROOM_EVENTS, ROOM_PRESENCE

__all__ = [
    "MESSAGE_CHANGED",
    "NEW_MESSAGE",
    "PRESENCE_EVENTS",
    "Fanout",
    "PresenceData",
    "event_name",
    "page_item",
    "parse_room_event",
]

PRESENCE_EVENTS = frozenset({"user_joined", "user_left"})

_messages = msgspec.json.Decoder(RoomMessages)
_presence = msgspec.json.Decoder(RoomEvent)


class PresenceData(msgspec.Struct, frozen=True):
    """What the gateway reads of a presence event's payload."""

    email: str
    count: int = 0
    users: list[str] | None = None
    """Only a small room's events carry the member list."""


@dataclass(slots=True)
class Fanout:
    """One event to deliver, encoded lazily into WebSocket frame bytes: once per protocol
    (and, for Socket.IO recovery offsets, once per room for single-room clients)."""

    room_id: str
    event: str
    data: bytes
    seq: int | None
    received_at: float | None = None
    sender: str | None = None
    """A message's sender (user id), when the bus says: they are no longer typing."""
    frames: dict[str, bytes] = field(default_factory=dict)
    """Its frame bytes by kind of client, built as the first of each kind needs them."""


NEW_MESSAGE = "new_message"
MESSAGE_CHANGED = "message_changed"


def event_name(kind: str | None) -> str:
    """The client event of a room event of ``kind``: ``new_message`` for a message,
    ``message_changed`` for a change to one (an edit, a delete, a reaction)."""
    return NEW_MESSAGE if kind is None else MESSAGE_CHANGED


def parse_room_event(room_id: str, kind: str, data: bytes) -> list[Fanout] | None:
    """The events one message on a room subject of ``kind`` carries, decoded once; ``None``
    when it does not belong there: messages (with their seqs) only on the subject history
    publishes to, presence (without) only on the session service's."""
    try:
        if kind == ROOM_EVENTS:
            batch = _messages.decode(data)
            if not batch.messages or any(m.seq < 1 for m in batch.messages):
                return None
            return [
                Fanout(room_id, event_name(m.kind), bytes(m.data), m.seq, m.received_at, m.sender)
                for m in batch.messages
            ]
        if kind == ROOM_PRESENCE:
            event = _presence.decode(data)
            if event.event not in PRESENCE_EVENTS or event.seq is not None:
                return None
            return [Fanout(room_id, event.event, bytes(event.data), None)]
    except msgspec.DecodeError:
        return None
    return None


def page_item(room_id: str, message: Message) -> Fanout:
    """One item of a history page (a gap fill, a resume replay, a catch-up page) as the
    event its live copy was."""
    return Fanout(room_id, event_name(message.kind), encode(message), message.seq)
