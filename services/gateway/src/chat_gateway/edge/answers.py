"""HTTP answers the gateway writes itself, and the routing of a request (pure).

The edge (:mod:`chat_gateway.edge.tcp`) parses requests with h11 and writes an
:class:`HttpAnswer` as a well-formed HTTP/1.1 response: always a ``Content-Length``, and
``Connection: close`` exactly when the connection closes after it. Which answer a request
gets is decided here, without I/O:

* ``/ws``: ``GET`` is upgraded to the native JSON protocol; other methods ``405``.
* ``/socket.io/`` (or the configured path, ``GATEWAY_SOCKETIO_PATH``): ``OPTIONS`` is a CORS preflight (``204``); otherwise ``EIO`` must be
  ``4`` (else Engine.IO error 5) and ``transport`` ``polling`` or ``websocket`` (else
  Engine.IO error 0); a ``polling`` ``GET`` or ``POST`` is a :class:`Poll` (with the ``sid``
  when there is one; only ``GET`` may open a session, else error 2), and a ``websocket``
  ``GET`` is upgraded to Socket.IO (another method: error 2). Answers on this path carry the CORS headers
  when the request's ``Origin`` is an allowed one (:func:`with_cors`), so that a browser
  page on that origin can read a refusal, as it can with the reference server.
* ``/`` and ``/static/<file>``: the web page for ``GET`` and ``HEAD``; other methods ``405``.
* anything else: ``404``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "NATIVE_PATH",
    "SOCKETIO_PATH",
    "HttpAnswer",
    "PageLookup",
    "Poll",
    "Upgrade",
    "engineio_error",
    "method_not_allowed",
    "not_found",
    "route",
    "too_many_connections",
    "unavailable",
    "with_cors",
]

SOCKETIO_PATH = "/socket.io/"
NATIVE_PATH = "/ws"

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A complete response; ``close`` asks for ``Connection: close`` and a close after it.
    Every answer but a ``204`` has a ``Content-Length``: always well framed."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False

    @property
    def reason(self) -> str:
        return _REASONS.get(self.status, "")

    def header_list(self) -> list[tuple[str, str]]:
        """Every header of the response, ``Content-Length`` and ``Connection`` included
        (a ``204`` has neither a body nor a length, RFC 9110 8.6)."""
        headers = []
        if self.status != 204:
            headers = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        headers += self.headers
        if self.close:
            headers.append(("Connection", "close"))
        return headers


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Accept the WebSocket handshake for this protocol (``engine_sid``: the long-polling
    session this WebSocket means to upgrade)."""

    protocol: Literal["native", "socketio"]
    engine_sid: str | None = None


@dataclass(frozen=True, slots=True)
class Poll:
    """An Engine.IO long-polling request: a handshake (no ``engine_sid``), a GET or a POST."""

    engine_sid: str | None


class PageLookup(Protocol):
    """What :func:`route` needs of the web page: a path to an answer, or ``None``."""

    def respond(self, path: str) -> HttpAnswer | None: ...


def not_found() -> HttpAnswer:
    return HttpAnswer(404, b"not found\n")


def method_not_allowed(allow: str) -> HttpAnswer:
    return HttpAnswer(405, b"method not allowed\n", headers=(("Allow", allow),))


def engineio_error(code: int, message: str) -> HttpAnswer:
    """Engine.IO's error body, ``400`` (as the reference server answers)."""
    body = json.dumps({"code": code, "message": message}).encode()
    return HttpAnswer(400, body, content_type="application/json")


def too_many_connections() -> HttpAnswer:
    return HttpAnswer(429, b"too many connections from this address\n", close=True)


def unavailable() -> HttpAnswer:
    """This gateway is shutting down or draining: connect again (to another one)."""
    return HttpAnswer(503, b"shutting down\n", close=True)


_CORS_MAX_AGE_S = 600
_HEADER_NAMES = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
"""A list of header names (RFC 9110 tokens), as ``Access-Control-Request-Headers`` holds."""


def with_cors(
    answer: HttpAnswer,
    *,
    target: str,
    method: str,
    origin: str | None,
    allowed: Collection[str],
    request_headers: str | None = None,
    socketio_path: str = SOCKETIO_PATH,
) -> HttpAnswer:
    """``answer`` with the CORS headers it needs: on ``socketio_path`` only, ``Vary: Origin``
    always and, for an allowed ``origin``, that origin with credentials (and for a preflight
    the methods, the requested headers when they are well formed, and a max age)."""
    if urlsplit(target).path != socketio_path:
        return answer
    headers = [("Vary", "Origin")]
    if origin is not None and origin in allowed:
        headers += [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
        ]
        if method == "OPTIONS":
            headers += [
                ("Access-Control-Allow-Methods", "GET, POST"),
                ("Access-Control-Max-Age", str(_CORS_MAX_AGE_S)),
            ]
            if request_headers and _HEADER_NAMES.fullmatch(request_headers.strip()):
                headers.append(("Access-Control-Allow-Headers", request_headers.strip()))
    return replace(answer, headers=answer.headers + tuple(headers))


def preflight() -> HttpAnswer:
    """The answer to a CORS preflight (its CORS headers come from :func:`with_cors`)."""
    return HttpAnswer(204)


def route(
    method: str,
    target: str,
    page: PageLookup | None = None,
    *,
    socketio_path: str = SOCKETIO_PATH,
) -> Upgrade | Poll | HttpAnswer:
    """Decide what a request gets: a WebSocket upgrade, or an answer (Socket.IO is served
    at ``socketio_path``)."""
    parts = urlsplit(target)
    if parts.path == NATIVE_PATH:
        return Upgrade("native") if method == "GET" else method_not_allowed("GET")
    if page is not None and (served := page.respond(target)) is not None:
        if method in ("GET", "HEAD"):
            return served
        return method_not_allowed("GET, HEAD")
    if parts.path != socketio_path:
        return not_found()
    if method == "OPTIONS":
        return preflight()
    query = parse_qs(parts.query)
    if query.get("EIO") != ["4"]:
        return engineio_error(5, "Unsupported protocol version")
    transport = query.get("transport")
    if transport == ["polling"]:
        sid = query.get("sid")
        if (sid is None and method != "GET") or method not in ("GET", "POST"):
            return engineio_error(2, "Bad handshake method")
        return Poll(sid[0] if sid else None)
    if transport != ["websocket"]:
        return engineio_error(0, "Transport unknown")
    if method != "GET":
        return engineio_error(2, "Bad handshake method")
    sid = query.get("sid")
    return Upgrade("socketio", sid[0] if sid else None)
