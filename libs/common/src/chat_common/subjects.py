"""NATS subject names: the only addresses services know each other by.

Room ids are validated (``chat_common.schemas.ROOM_ID_PATTERN``) before they are put in a
subject, so a room id is always exactly one subject token.
"""

from __future__ import annotations

__all__ = [
    "GATEWAY_SERVICE",
    "HISTORY_SERVICE",
    "SESSION_SERVICE",
    "gateway_control",
    "gateway_endpoint",
    "history_endpoint",
    "room_events",
    "session_endpoint",
]

SESSION_SERVICE = "session"
HISTORY_SERVICE = "history"
GATEWAY_SERVICE = "gateway"
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


def _token(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def gateway_control(gateway_id: str) -> str:
    """Where one gateway instance hears about its sessions taken over elsewhere."""
    return f"{_PREFIX}.gateway.{_token(gateway_id)}.control"


def gateway_endpoint(gateway_id: str, name: str) -> str:
    """A request/reply endpoint of one gateway instance, e.g. ``chat.gateway.gw-1.status``."""
    return f"{_PREFIX}.gateway.{_token(gateway_id)}.{name}"
