"""A session's identifiers (pure): its id, its resume token, and the Socket.IO ``pid``.

* The session id names the session in the session store; the resume token proves a
  reconnecting client owns it (the store keeps only its hash, ``chat_common.tokens``).
* ``pid`` (private session id) is ``<sessionId>.<resumeToken>``: only the client that owns
  the session ever sees it (in its CONNECT reply), and it is all a reconnect needs.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["make_pid", "new_session_id", "new_token", "parse_pid"]

_HEX = re.compile(r"^[0-9a-f]{32}\Z")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}\Z")


def new_session_id() -> str:
    return secrets.token_hex(16)


def new_token() -> str:
    """A 256-bit secret, URL-safe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(32)


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
