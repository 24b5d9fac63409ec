"""Every WebSocket close code the gateway sends, in one table (pure).

Two classes, as clients must treat them (docs/protocol.md section 6):

* **reconnect**: transient; reconnect with backoff and resume the session.
* **terminal**: the same frames or credentials would fail again; fix the cause first.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CLOSE_FLOOD",
    "CLOSE_GOODBYE",
    "CLOSE_HANDSHAKE_TIMEOUT",
    "CLOSE_INVALID_DATA",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_PING_TIMEOUT",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_SESSION_ENDED",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TAKEN_OVER",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_UNAUTHENTICATED",
    "CLOSE_UNSUPPORTED_DATA",
    "KIND",
]

CLOSE_GOODBYE = 1000
"""The client said goodbye (Socket.IO ``41`` or Engine.IO ``1``): its session ends."""
CLOSE_PROTOCOL_ERROR = 1002
"""A frame that breaks the protocol."""
CLOSE_UNSUPPORTED_DATA = 1003
"""A frame of a kind the endpoint does not accept (binary on ``/ws``)."""
CLOSE_INVALID_DATA = 1007
"""Text that is not valid UTF-8."""
CLOSE_FLOOD = 1008
"""Policy violation: the connection stayed over its read budget (``GATEWAY_FLOOD_CUT_S``)."""
CLOSE_MESSAGE_TOO_BIG = 1009
"""A frame larger than ``GATEWAY_MAX_PAYLOAD``."""
CLOSE_SERVICE_RESTART = 1012
"""The gateway is shutting down or draining."""
CLOSE_PING_TIMEOUT = 4000
"""No pong (Engine.IO or WebSocket) within ``pingInterval + pingTimeout``."""
CLOSE_UNAUTHENTICATED = 4001
"""The token is missing, invalid or expired: get a new one before reconnecting."""
CLOSE_HANDSHAKE_TIMEOUT = 4002
"""The connection did not connect/authenticate, or join, in time."""
CLOSE_TOKEN_EXPIRED = 4003
"""The token expired while connected: reconnect (and resume) with a fresh one."""
CLOSE_SLOW_CONSUMER = 4008
"""The client fell too far behind (``GATEWAY_SLOW_CONSUMER_BYTES`` queued for it)."""
CLOSE_TAKEN_OVER = 4009
"""The session of this connection was resumed on another connection."""
CLOSE_SESSION_ENDED = 4010
"""The session service ended this connection's session (it expired while the gateway could
not heartbeat it) and it cannot be re-registered: reconnect with a fresh session."""

KIND: dict[int, Literal["reconnect", "terminal"]] = {
    CLOSE_GOODBYE: "terminal",
    CLOSE_PROTOCOL_ERROR: "terminal",
    CLOSE_UNSUPPORTED_DATA: "terminal",
    CLOSE_INVALID_DATA: "terminal",
    CLOSE_FLOOD: "terminal",
    CLOSE_MESSAGE_TOO_BIG: "terminal",
    CLOSE_SERVICE_RESTART: "reconnect",
    CLOSE_PING_TIMEOUT: "reconnect",
    CLOSE_UNAUTHENTICATED: "terminal",
    CLOSE_HANDSHAKE_TIMEOUT: "reconnect",
    CLOSE_TOKEN_EXPIRED: "reconnect",
    CLOSE_SLOW_CONSUMER: "reconnect",
    CLOSE_TAKEN_OVER: "terminal",
    CLOSE_SESSION_ENDED: "reconnect",
}
"""What a client should do after each code."""
