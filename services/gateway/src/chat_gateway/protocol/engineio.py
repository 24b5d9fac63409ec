"""Engine.IO v4, server side, without I/O: the packets, and the long-polling payloads.

Over WebSocket each text frame is one packet: a type digit then its data. Over HTTP
long-polling, a request or response body holds one or more packets separated by the record
separator ``\x1e`` (:func:`decode_payload`, :func:`encode_payload`); a polling handshake
offers the upgrade to WebSocket (``2probe``/``3probe`` then ``5`` on the new WebSocket, which
the polling session handles itself; a ``5`` reaching the codec is an error).

====  =======  ==========================================================
Type  Name     What this server does with it
====  =======  ==========================================================
0     open     sent once by the server (``encode_open``); from a client: error
1     close    ``Close``: the client ends the session
2     ping     sent by the server (``PING``); from a client: ``Ping``, answer ``PONG``
3     pong     ``Pong``: the client answered the server's ping
4     message  ``EngineMessage``: its data is a Socket.IO packet
5     upgrade  error: the polling session takes it from a new WebSocket
6     noop     ``Noop``
====  =======  ==========================================================

Data after a control packet type (``2probe``) is ignored. A binary frame is an Engine.IO binary
message; only the Socket.IO layer knows whether one is expected. Errors raise
``ProtocolError``: an empty frame, an unknown type, and the open and upgrade types.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from chat_gateway.closecodes import CLOSE_INVALID_DATA

from .messages import Close, Noop, Ping, Pong, ProtocolError

__all__ = [
    "CLOSE",
    "NOOP",
    "PING",
    "PONG",
    "EngineMessage",
    "decode_payload",
    "decode_text",
    "encode_open",
    "encode_payload",
]

CLOSE = b"1"
"""An Engine.IO close packet."""
PING = b"2"
"""An Engine.IO ping packet: the server sends one every ``pingInterval``."""
PONG = b"3"
"""An Engine.IO pong packet: the answer to a client's ping."""
NOOP = b"6"
"""An Engine.IO noop packet."""
SEPARATOR = b"\x1e"
"""Between two packets of a long-polling payload."""

_CONTROL: dict[str, Close | Ping | Pong | Noop] = {
    "1": Close(),
    "2": Ping(),
    "3": Pong(),
    "6": Noop(),
}


@dataclass(frozen=True, slots=True)
class EngineMessage:
    """An Engine.IO message packet; ``data`` is the Socket.IO packet it carries."""

    data: str


def encode_open(
    engine_sid: str,
    *,
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int,
    upgrades: tuple[str, ...] = (),
) -> str:
    """The handshake the server sends first: ``0{"sid":...,"upgrades":[...],...}``."""
    handshake = {
        "sid": engine_sid,
        "upgrades": list(upgrades),
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    return "0" + msgspec.json.encode(handshake).decode()


def decode_text(frame: str) -> EngineMessage | Close | Ping | Pong | Noop:
    """Decode one Engine.IO text frame; raise ``ProtocolError`` when it is not a valid packet."""
    kind = frame[:1]
    if kind == "4":
        return EngineMessage(frame[1:])
    control = _CONTROL.get(kind)
    if control is not None:
        return control
    if not kind:
        raise ProtocolError("empty Engine.IO packet")
    if kind == "0":
        raise ProtocolError("Engine.IO open is server-only")
    if kind == "5":
        raise ProtocolError("unexpected Engine.IO upgrade")
    raise ProtocolError("unknown Engine.IO packet type")


def decode_payload(body: bytes) -> list[str]:
    """The packets of a long-polling request body; ``ProtocolError`` (1007) when it is
    not UTF-8, or (1002) when it is empty. Each packet is then decoded as a text frame."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise ProtocolError("payload is not valid UTF-8", close_code=CLOSE_INVALID_DATA) from None
    if not text:
        raise ProtocolError("empty Engine.IO payload")
    return text.split("\x1e")


def encode_payload(packets: list[bytes]) -> bytes:
    """A long-polling response body carrying ``packets`` in order."""
    return SEPARATOR.join(packets)
