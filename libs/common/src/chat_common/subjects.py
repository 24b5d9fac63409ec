"""NATS subject names: the only addresses services know each other by.

Room ids are validated (``chat_common.schemas.ROOM_ID_PATTERN``) before they are put in a
subject, so a room id is always exactly one subject token.
"""

from __future__ import annotations

__all__ = [
    "HISTORY_SERVICE",
    "SESSION_SERVICE",
    "gateway_control",
    "history_endpoint",
    "room_events",
    "session_endpoint",
]

SESSION_SERVICE = "session"
HISTORY_SERVICE = "history"
_PREFIX = "chat"


def session_endpoint(name: str) -> str:
    """Subject of a session-service endpoint, e.g. ``chat.session.join``."""
    return f"{_PREFIX}.{SESSION_SERVICE}.{name}"


def history_endpoint(name: str) -> str:
    """Subject of a history-service endpoint, e.g. ``chat.history.append``."""
    return f"{_PREFIX}.{HISTORY_SERVICE}.{name}"


def room_events(room_id: str) -> str:
    """Fan-out subject of one room: every gateway with members in it subscribes."""
    return f"{_PREFIX}.room.{room_id}.events"


def gateway_control(gateway_id: str) -> str:
    """Where one gateway instance takes orders (session takeovers, drains)."""
    token = "".join(c if c.isalnum() or c in "-_" else "_" for c in gateway_id)
    return f"{_PREFIX}.gateway.{token}.control"
