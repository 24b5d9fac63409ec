"""A session's identifiers (pure): its id, its resume token, and the Socket.IO ``pid``.

* The session id names the session in the session store; the resume token proves a
  reconnecting client owns it (the store keeps only its hash, ``chat_common.tokens``).
* ``pid`` (private session id) is ``<sessionId>.<resumeToken>``: only the client that owns
  the session ever sees it (in its CONNECT reply), and it is all a reconnect needs.
* The socket id (Socket.IO ``sid``) is public: what other clients may see of a connection.
  It is not the Engine.IO sid (``engine_sid``), which names a long-polling session.

:class:`SessionRef` holds them for one connection, with whether the session service holds
the session (:class:`Hold`).
"""

from __future__ import annotations

import re
import secrets
from enum import Enum

__all__ = [
    "Hold",
    "SessionRef",
    "make_pid",
    "new_session_id",
    "new_socket_id",
    "new_token",
    "parse_pid",
]

_HEX = re.compile(r"^[0-9a-f]{32}\Z")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}\Z")


def new_session_id() -> str:
    return secrets.token_hex(16)


def new_token() -> str:
    """A 256-bit secret, URL-safe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def new_socket_id() -> str:
    return secrets.token_hex(8)


def make_pid(session_id: str, token: str) -> str:
    return f"{session_id}.{token}"


def parse_pid(pid: object) -> tuple[str, str] | None:
    """``(session_id, token)`` from a well-formed pid, else ``None``."""
    if not isinstance(pid, str) or len(pid) > 100:
        return None
    session_id, _, token = pid.partition(".")
    if not _HEX.match(session_id) or not _TOKEN.match(token):
        return None
    return session_id, token


class Hold(Enum):
    """Whether the session service may hold state for a connection's session."""

    NONE = "none"
    """Only the ids exist: nothing was recorded (no join tried, no resume)."""
    HELD = "held"
    """A join was tried, or a session was resumed: the session service may hold it."""
    TAKEN_OVER = "taken over"
    """A resume elsewhere took the session: this connection must leave it alone."""


class SessionRef:
    """One connection's view of its session: the ids, the email the first join fixed, and
    whether the session service holds it (pure)."""

    __slots__ = ("email", "hold", "ops", "session_id", "socket_id", "token")

    def __init__(self) -> None:
        self.session_id = new_session_id()
        self.token = new_token()
        """The resume token (the store keeps only its hash)."""
        self.socket_id = new_socket_id()
        """The public socket id (Socket.IO ``sid``), kept across a resume."""
        self.email: str | None = None
        self.hold = Hold.NONE
        self.ops = 0
        """How many joins and leaves this connection has asked of the session service for
        this session: each carries the next number, so one that arrives late (after a later
        one) is refused there."""

    @property
    def held(self) -> bool:
        return self.hold is Hold.HELD

    @property
    def pid(self) -> str:
        return make_pid(self.session_id, self.token)

    def next_op(self) -> int:
        """The number of the next join or leave (from 1)."""
        self.ops += 1
        return self.ops

    def begin(self) -> None:
        """The session service may hold state for this session from now on."""
        if self.hold is Hold.NONE:
            self.hold = Hold.HELD

    def adopt(self, *, session_id: str, token: str, socket_id: str, email: str) -> None:
        """Resume: this connection carries on a dropped session."""
        self.session_id, self.token, self.socket_id = session_id, token, socket_id
        self.email = email
        self.hold = Hold.HELD
        self.ops = 0  # the session service numbers this connection's from 1 again

    def start_afresh(self) -> None:
        """A new session with new ids, no email, nothing held."""
        self.session_id, self.token, self.socket_id = new_session_id(), new_token(), new_socket_id()
        self.email = None
        self.hold = Hold.NONE
        self.ops = 0

    def take_over(self) -> None:
        """A resume elsewhere took the session: leave it alone from now on."""
        self.hold = Hold.TAKEN_OVER
