"""Routing of client-port requests and the HTTP answers the gateway writes itself."""

from __future__ import annotations

import pytest

from chat_gateway.edge.answers import (
    HttpAnswer,
    Poll,
    Upgrade,
    route,
    too_many_connections,
    with_cors,
)
from chat_gateway.edge.tcp import serialize


@pytest.mark.parametrize(
    "method,path,expected",
    [
        ("GET", "/ws", Upgrade("native")),
        ("GET", "/ws?token=x", Upgrade("native")),
        ("GET", "/socket.io/?EIO=4&transport=websocket", Upgrade("socketio")),
        ("GET", "/socket.io/?EIO=4&transport=websocket&t=abc", Upgrade("socketio")),
        ("GET", "/socket.io/?EIO=4&transport=polling", Poll(None)),
        ("GET", "/socket.io/?EIO=4&transport=polling&sid=abc", Poll("abc")),
        ("POST", "/socket.io/?EIO=4&transport=polling&sid=abc", Poll("abc")),
        ("POST", "/socket.io/?EIO=4&transport=polling", 400),
        ("PUT", "/socket.io/?EIO=4&transport=polling&sid=abc", 400),
        ("GET", "/socket.io/?EIO=4&transport=carrier-pigeon", 400),
        ("POST", "/socket.io/?EIO=4&transport=websocket", 400),
        ("GET", "/socket.io/?EIO=3&transport=websocket", 400),
        ("GET", "/socket.io/", 400),
        ("OPTIONS", "/socket.io/?EIO=4&transport=polling", 204),
        ("OPTIONS", "/ws", 405),
        ("POST", "/ws", 405),
        ("GET", "/", 404),
        ("GET", "/wsx", 404),
        ("DELETE", "/anything", 404),
    ],
)
def test_route(method: str, path: str, expected: Upgrade | Poll | int) -> None:
    """The two WebSocket endpoints are upgraded, long-polling requests go to their session
    (only a GET opens one); everything else gets an answer."""
    decision = route(method, path)
    if isinstance(expected, Upgrade | Poll):
        assert decision == expected
    else:
        assert isinstance(decision, HttpAnswer) and decision.status == expected


def test_socketio_is_served_at_the_configured_path_only() -> None:
    """With another path (the reference server's ``path`` option), Socket.IO moves there:
    ``/socket.io/`` is then not found, and CORS follows the path."""
    moved = "/engine.io/"
    assert route("GET", "/engine.io/?EIO=4&transport=polling", socketio_path=moved) == Poll(None)
    assert route("GET", "/engine.io/?EIO=4&transport=websocket",
                 socketio_path=moved) == Upgrade("socketio")  # fmt: skip
    old = route("GET", "/socket.io/?EIO=4&transport=polling", socketio_path=moved)
    assert isinstance(old, HttpAnswer) and old.status == 404
    refusal = route("GET", "/engine.io/?EIO=3&transport=polling", socketio_path=moved)
    assert isinstance(refusal, HttpAnswer) and refusal.status == 400
    headers = dict(with_cors(refusal, target="/engine.io/?EIO=3", method="GET", origin=ALLOWED[0],
                             allowed=ALLOWED, socketio_path=moved).header_list())  # fmt: skip
    assert headers["Access-Control-Allow-Origin"] == ALLOWED[0]


def test_engineio_errors_say_which_check_failed() -> None:
    """The version is checked first (code 5), then the transport (code 0), then the method
    (code 2), as JSON, with the reference server's codes."""
    version = route("GET", "/socket.io/?EIO=3&transport=polling")
    transport = route("GET", "/socket.io/?EIO=4&transport=smoke")
    method = route("POST", "/socket.io/?EIO=4&transport=polling")
    assert isinstance(version, HttpAnswer) and version.body == (
        b'{"code": 5, "message": "Unsupported protocol version"}'
    )
    assert isinstance(transport, HttpAnswer) and b'"code": 0' in transport.body
    assert isinstance(method, HttpAnswer) and b'"code": 2' in method.body
    assert dict(transport.header_list())["Content-Type"] == "application/json"


def test_every_answer_has_a_length_and_close_only_when_closing() -> None:
    """Content-Length always; Connection: close exactly on answers after which we close."""
    kept = route("GET", "/nope")
    assert isinstance(kept, HttpAnswer)
    assert dict(kept.header_list()) == {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Length": "10",
    }
    assert dict(too_many_connections().header_list())["Connection"] == "close"


def test_serialized_answer_is_well_formed_http() -> None:
    """The raw form (for requests h11 could not parse) is a complete HTTP/1.1 response."""
    raw = serialize(HttpAnswer(400, b"bad request\n", close=True))
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert b"Content-Length: 12" in lines and b"Connection: close" in lines
    assert body == b"bad request\n"


ALLOWED = ("http://app.example",)
POLL = "/socket.io/?EIO=4&transport=polling"


def test_cors_grants_only_allowed_origins_on_socketio() -> None:
    """On /socket.io/, an allowed Origin is granted with credentials and every answer
    varies by Origin; another origin, no origin, or another path gets no grant."""
    refusal = route("GET", "/socket.io/?EIO=3&transport=polling")
    assert isinstance(refusal, HttpAnswer)
    granted = dict(with_cors(refusal, target=POLL, method="GET", origin=ALLOWED[0],
                             allowed=ALLOWED).header_list())  # fmt: skip
    assert granted["Access-Control-Allow-Origin"] == ALLOWED[0]
    assert granted["Access-Control-Allow-Credentials"] == "true"
    assert granted["Vary"] == "Origin"
    for origin in ("http://evil.example", None, "null"):
        headers = dict(
            with_cors(refusal, target=POLL, method="GET", origin=origin, allowed=ALLOWED)
            .header_list()
        )  # fmt: skip
        assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    other = route("GET", "/nope")
    assert isinstance(other, HttpAnswer)
    assert with_cors(other, target="/nope", method="GET", origin=ALLOWED[0],
                     allowed=ALLOWED) == other  # fmt: skip


@pytest.mark.parametrize(
    "asked,echoed",
    [("content-type", "content-type"), ("Content-Type, X-Token", "Content-Type, X-Token"),
     ("bad\r\nSet-Cookie: x", None), ("", None), (None, None)],
)  # fmt: skip
def test_preflight_grants_methods_and_well_formed_headers(
    asked: str | None, echoed: str | None
) -> None:
    """A preflight from an allowed origin: 204 without a body or a length, GET and POST,
    a max age, and the requested headers echoed only when they are a list of names."""
    answer = route("OPTIONS", POLL)
    assert isinstance(answer, HttpAnswer) and answer.status == 204
    headers = dict(with_cors(answer, target=POLL, method="OPTIONS", origin=ALLOWED[0],
                             allowed=ALLOWED, request_headers=asked).header_list())  # fmt: skip
    assert "Content-Length" not in headers and "Content-Type" not in headers
    assert headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert headers["Access-Control-Max-Age"] == "600"
    assert headers.get("Access-Control-Allow-Headers") == echoed
