"""NATS subject names: the only addresses services know each other by.

Room ids are validated (``chat_common.schemas.ROOM_ID_PATTERN``) before they are put in a
subject, so a room id is always exactly one subject token.

A room has three fan-out subjects with one kind of publisher each, so that the bus's
permissions (:mod:`chat_common.buspermissions`) can say who may speak on which: messages
(``chat.room.<room>.events``, history only, after COMMIT), presence
(``chat.room.<room>.presence``, session only) and typing (``chat.room.<room>.typing``, the
gateways only: the typist's gateway publishes it, never stored). A gateway listens to all
three with one subscription (:func:`room_subjects`).

A user has one stream (``chat.user.<token>.events``, history only), where ``<token>`` is a
hash of the user id (:func:`user_token`).
"""

from __future__ import annotations

import hashlib

__all__ = [
    "GATEWAY_SERVICE",
    "HISTORY_SERVICE",
    "ROOM_EVENTS",
    "ROOM_PRESENCE",
    "ROOM_TYPING",
    "SESSION_SERVICE",
    "USER_EVENTS_ANY",
    "any_gateway",
    "gateway_control",
    "gateway_endpoint",
    "history_endpoint",
    "room_events",
    "room_kind",
    "room_presence",
    "room_subjects",
    "room_typing",
    "session_endpoint",
    "user_events",
    "user_token",
]

SESSION_SERVICE = "session"
HISTORY_SERVICE = "history"
GATEWAY_SERVICE = "gateway"
_PREFIX = "chat"
ROOM_EVENTS = "events"
"""Last token of a room's message subject."""
ROOM_PRESENCE = "presence"
"""Last token of a room's presence subject."""
ROOM_TYPING = "typing"
"""Last token of a room's typing subject."""


def session_endpoint(name: str) -> str:
    """Subject of a session-service endpoint, e.g. ``chat.session.join``."""
    return f"{_PREFIX}.{SESSION_SERVICE}.{name}"


def history_endpoint(name: str) -> str:
    """Subject of a history-service endpoint, e.g. ``chat.history.append``."""
    return f"{_PREFIX}.{HISTORY_SERVICE}.{name}"


def room_events(room_id: str) -> str:
    """Where history publishes a room's committed messages (``new_message``)."""
    return f"{_PREFIX}.room.{room_id}.{ROOM_EVENTS}"


def room_presence(room_id: str) -> str:
    """Where the session service publishes a room's ``user_joined`` / ``user_left``."""
    return f"{_PREFIX}.room.{room_id}.{ROOM_PRESENCE}"


def room_typing(room_id: str) -> str:
    """Where gateways publish who starts and stops typing in a room (never stored)."""
    return f"{_PREFIX}.room.{room_id}.{ROOM_TYPING}"


def room_subjects(room_id: str) -> str:
    """Every fan-out subject of one room: what a gateway with members in it subscribes to."""
    return f"{_PREFIX}.room.{room_id}.*"


def room_kind(subject: str) -> str:
    """The last token of a room subject: :data:`ROOM_EVENTS`, :data:`ROOM_PRESENCE` or
    :data:`ROOM_TYPING`."""
    return subject.rsplit(".", 1)[-1]


def _token(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def gateway_control(gateway_id: str) -> str:
    """Where one gateway instance hears about its sessions taken over elsewhere."""
    return f"{_PREFIX}.gateway.{_token(gateway_id)}.control"


def gateway_endpoint(gateway_id: str, name: str) -> str:
    """A request/reply endpoint of one gateway instance, e.g. ``chat.gateway.gw-1.status``."""
    return f"{_PREFIX}.gateway.{_token(gateway_id)}.{name}"


def any_gateway(name: str) -> str:
    """``name`` (``control``, ``status``, ``drain``) of every gateway instance: a wildcard."""
    return f"{_PREFIX}.gateway.*.{name}"


def user_token(user_id: str) -> str:
    """A user's subject token: 32 hex digits of SHA-256 over the user id, so that a subject
    names the user without revealing the id (an email in development mode)."""
    return hashlib.sha256(b"chat.user:" + user_id.encode()).hexdigest()[:32]


def user_events(user_id: str) -> str:
    """Where history publishes a user's stream (``read_state``, ``membership``): one
    subscription per gateway per user it holds connections of."""
    return f"{_PREFIX}.user.{user_token(user_id)}.events"


USER_EVENTS_ANY = f"{_PREFIX}.user.*.events"
"""Every user's stream: a wildcard, for bus permissions."""
