"""Routing of client-port requests and the HTTP answers the gateway writes itself."""

from __future__ import annotations

import pytest

from chat_gateway.edge.answers import HttpAnswer, Upgrade, route, too_many_connections
from chat_gateway.edge.connection import serialize


@pytest.mark.parametrize(
    "method,path,expected",
    [
        ("GET", "/ws", Upgrade("native")),
        ("GET", "/ws?token=x", Upgrade("native")),
        ("GET", "/socket.io/?EIO=4&transport=websocket", Upgrade("socketio")),
        ("GET", "/socket.io/?EIO=4&transport=websocket&t=abc", Upgrade("socketio")),
        ("GET", "/socket.io/?EIO=4&transport=polling", 400),
        ("POST", "/socket.io/?EIO=4&transport=polling", 400),
        ("POST", "/socket.io/?EIO=4&transport=websocket", 400),
        ("GET", "/socket.io/?EIO=3&transport=websocket", 400),
        ("GET", "/socket.io/", 400),
        ("POST", "/ws", 405),
        ("GET", "/", 404),
        ("GET", "/wsx", 404),
        ("DELETE", "/anything", 404),
    ],
)
def test_route(method: str, path: str, expected: Upgrade | int) -> None:
    """Only the two WebSocket endpoints are upgraded; everything else gets an answer."""
    decision = route(method, path)
    if isinstance(expected, Upgrade):
        assert decision == expected
    else:
        assert isinstance(decision, HttpAnswer) and decision.status == expected


def test_engineio_errors_say_which_check_failed() -> None:
    """The version is checked first (code 5), then the transport (code 3), as JSON."""
    version = route("GET", "/socket.io/?EIO=3&transport=polling")
    transport = route("GET", "/socket.io/?EIO=4&transport=polling")
    assert isinstance(version, HttpAnswer) and version.body == (
        b'{"code": 5, "message": "Unsupported protocol version"}'
    )
    assert isinstance(transport, HttpAnswer) and b'"code": 3' in transport.body
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
