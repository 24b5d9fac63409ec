"""Socket.IO v5 over Engine.IO v4 WebSocket, server side, without I/O.

A Socket.IO packet rides in an Engine.IO message (``4``) and reads
``<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]``; the namespace ``/`` is
omitted. ``SocketIOCodec.receive`` turns each frame into ``Inbound`` items. Digits after the
namespace are always the ack id (as in socket.io-parser), so a bare number is never a payload.

Decode policy. ``ProtocolError`` (close the connection, 1002 unless noted) when the frame
cannot be decoded at all:

* larger than ``max_payload`` bytes (1009); text that is not UTF-8 (1007);
* any Engine.IO error (see ``engineio``); an empty or unknown Socket.IO type;
* a malformed header: attachment count not ``<1-2 digits>-`` or above ``MAX_ATTACHMENTS``,
  namespace longer than ``MAX_NAMESPACE_LENGTH``, ack id longer than 16 digits or above
  ``MAX_ACK_ID``, an ack id on CONNECT/DISCONNECT, none on ACK/BINARY_ACK;
* a payload that is present but not valid JSON;
* CONNECT whose payload is not an object; DISCONNECT with a payload; CONNECT_ERROR (server-only);
* EVENT, ACK or binary packets on a namespace other than ``/`` (never connected: only ``/`` is
  served, and the reference server closes too);
* a binary frame when no attachment is announced, or a text frame while some still are;
* an EVENT whose payload the protocol forbids (it MUST be an array whose first element is the
  event name): missing, not an array, empty, a first element that is neither a string nor a
  number, or a reserved event name. The reference parser (socket.io-parser) rejects exactly
  these, and the server closes the connection on them.

``BadEvent`` (code ``INVALID_ARGUMENT``, connection stays up) when the packet is valid Socket.IO
but not an event we serve: a numeric event name, a name that is not 1..128 characters, more
than one argument; and every BINARY_EVENT/BINARY_ACK ("binary attachments are not
supported"), whose announced attachment frames are then swallowed. A BINARY_ACK's BadEvent has
no ``ack_id``: that id numbers a server emit and must not be acked back.

CONNECT and DISCONNECT for any namespace come back as ``NamespaceConnect`` and
``NamespaceDisconnect``; the connection layer answers CONNECT_ERROR for namespaces it does not
serve. Client ACK packets are validated and dropped: the server does not ask for acks.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from . import engineio
from .messages import (
    EVENT_NAME_RULE,
    MAX_ACK_ID,
    ClientEvent,
    Inbound,
    NamespaceConnect,
    NamespaceDisconnect,
    ProtocolError,
    check_frame_size,
    decode_json,
    invalid_argument,
    is_event_name,
)

__all__ = [
    "CLOSE",
    "MAX_ATTACHMENTS",
    "MAX_NAMESPACE_LENGTH",
    "PING",
    "PONG",
    "RESERVED_EVENTS",
    "SocketIOCodec",
]

PING = engineio.PING
CLOSE = engineio.CLOSE
PONG = engineio.PONG
MAX_ATTACHMENTS = 10
"""Most binary attachments a packet may announce (socket.io-parser's default)."""
MAX_NAMESPACE_LENGTH = 256
"""Longest namespace accepted in a packet header, in characters."""
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
"""Event names Socket.IO keeps for itself: never accepted from a client nor emitted."""

_DIGITS = frozenset("0123456789")
_MAX_ACK_DIGITS = len(str(MAX_ACK_ID))
_BINARY_UNSUPPORTED = "binary attachments are not supported"


def _scan_digits(text: str, start: int, limit: int) -> int:
    """The index after the ASCII digits at ``text[start:]``, reading at most ``limit + 1``."""
    end = start
    stop = min(len(text), start + limit + 1)
    while end < stop and text[end] in _DIGITS:
        end += 1
    return end


class SocketIOCodec:
    """One connection's Socket.IO/Engine.IO decoder state, and the server's encoders.

    The encoders are static: a broadcast is encoded once, without a codec, and the same
    bytes go to every connection as a WebSocket text frame.
    """

    PING: ClassVar[bytes] = engineio.PING
    PONG: ClassVar[bytes] = engineio.PONG
    CLOSE: ClassVar[bytes] = engineio.CLOSE

    def __init__(self, *, ping_interval_ms: int, ping_timeout_ms: int, max_payload: int) -> None:
        if min(ping_interval_ms, ping_timeout_ms, max_payload) <= 0:
            raise ValueError("ping_interval_ms, ping_timeout_ms and max_payload must be positive")
        self.ping_interval_ms = ping_interval_ms
        self.ping_timeout_ms = ping_timeout_ms
        self.max_payload = max_payload
        self._pending_attachments = 0

    @property
    def pending_attachments(self) -> int:
        """How many binary frames are still to be swallowed."""
        return self._pending_attachments

    def open_packet(self, engine_sid: str, *, upgrades: tuple[str, ...] = ()) -> str:
        """The Engine.IO handshake to send first, as text (``upgrades``: the transports a
        long-polling session may move to)."""
        return engineio.encode_open(
            engine_sid,
            ping_interval_ms=self.ping_interval_ms,
            ping_timeout_ms=self.ping_timeout_ms,
            max_payload=self.max_payload,
            upgrades=upgrades,
        )

    def receive(self, frame: str | bytes) -> list[Inbound]:
        """Decode one WebSocket frame (``str`` text, ``bytes`` binary); see the module policy."""
        check_frame_size(frame, self.max_payload)
        if not isinstance(frame, str):
            if not self._pending_attachments:
                raise ProtocolError("unexpected binary frame")
            self._pending_attachments -= 1
            return []
        if self._pending_attachments:
            raise ProtocolError("text frame while binary attachments are pending")
        packet = engineio.decode_text(frame)
        if isinstance(packet, engineio.EngineMessage):
            return self._decode_packet(packet.data)
        return [packet]

    def _decode_packet(self, text: str) -> list[Inbound]:
        """Decode one Socket.IO packet."""
        kind = text[:1]
        if not kind or kind not in "0123456":
            raise ProtocolError("unknown Socket.IO packet type")
        pos = 1
        attachments = 0
        if kind in "56":
            end = _scan_digits(text, pos, 2)
            if end == pos or end - pos > 2 or text[end : end + 1] != "-":
                raise ProtocolError("malformed attachment count")
            attachments = int(text[pos:end])
            if attachments > MAX_ATTACHMENTS:
                raise ProtocolError("too many attachments")
            pos = end + 1
        namespace = "/"
        if text[pos : pos + 1] == "/":
            comma = text.find(",", pos, pos + MAX_NAMESPACE_LENGTH + 1)
            end = len(text) if comma < 0 else comma
            if end - pos > MAX_NAMESPACE_LENGTH:
                raise ProtocolError("namespace too long")
            namespace = text[pos:end]
            pos = end + 1
        end = _scan_digits(text, pos, _MAX_ACK_DIGITS)
        ack_id: int | None = None
        if end > pos:
            ack_id = int(text[pos:end])
            if end - pos > _MAX_ACK_DIGITS or ack_id > MAX_ACK_ID:
                raise ProtocolError("ack id out of range")
        payload = text[end:]
        if kind == "0":
            return [self._connect(namespace, ack_id, payload)]
        if kind == "1":
            if ack_id is not None or payload:
                raise ProtocolError("malformed DISCONNECT packet")
            return [NamespaceDisconnect(namespace)]
        if kind == "4":
            raise ProtocolError("CONNECT_ERROR is server-only")
        if namespace != "/":
            raise ProtocolError("packet for a namespace that is not connected")
        if kind == "2":
            return [self._event(ack_id, payload)]
        args = decode_json(payload) if payload else None
        if kind in "36" and (ack_id is None or not isinstance(args, list)):
            raise ProtocolError("malformed ACK packet")
        if kind == "3":
            return []
        self._pending_attachments = attachments
        if kind == "6":
            return [invalid_argument(_BINARY_UNSUPPORTED, None, None)]
        name = args[0] if isinstance(args, list) and args else None
        event = name if is_event_name(name) else None
        return [invalid_argument(_BINARY_UNSUPPORTED, event, ack_id)]

    @staticmethod
    def _connect(namespace: str, ack_id: int | None, payload: str) -> NamespaceConnect:
        """Decode a CONNECT packet's rest."""
        if ack_id is not None:
            raise ProtocolError("malformed CONNECT packet")
        if not payload:
            return NamespaceConnect(namespace, None)
        auth = decode_json(payload)
        if not isinstance(auth, dict):
            raise ProtocolError("CONNECT payload must be an object")
        return NamespaceConnect(namespace, auth)

    @staticmethod
    def _event(ack_id: int | None, payload: str) -> Inbound:
        """Decode an EVENT packet's payload into a ``ClientEvent`` or a ``BadEvent``."""
        args = decode_json(payload) if payload else None
        if not isinstance(args, list) or not args:
            raise ProtocolError("event payload must be a non-empty JSON array")
        name = args[0]
        if isinstance(name, bool) or not isinstance(name, str | int | float):
            raise ProtocolError("event name must be a string or a number")
        if name in RESERVED_EVENTS:
            raise ProtocolError("reserved event name")
        if not is_event_name(name):
            return invalid_argument(EVENT_NAME_RULE, None, ack_id)
        if len(args) > 2:
            return invalid_argument("events take at most one argument", name, ack_id)
        return ClientEvent(name, args[1] if len(args) == 2 else None, ack_id)

    @staticmethod
    def encode_connect(data: dict[str, object]) -> bytes:
        """CONNECT to ``/`` accepted: ``40{"sid":...}`` with ``data`` encoded as given."""
        return b"40" + msgspec.json.encode(data)

    @staticmethod
    def encode_connect_error(namespace: str, message: str, data: object | None = None) -> bytes:
        """CONNECT refused: ``44[/ns,]{"message":...[,"data":...]}`` (``data`` omitted if None)."""
        if not namespace.startswith("/") or "," in namespace:
            raise ValueError("namespace must start with '/' and contain no ','")
        body: dict[str, object] = {"message": message}
        if data is not None:
            body["data"] = data
        prefix = b"44" if namespace == "/" else b"44" + namespace.encode() + b","
        return prefix + msgspec.json.encode(body)

    @staticmethod
    def encode_event(
        name: str, payload_json: bytes, *, extra_args_json: tuple[bytes, ...] = ()
    ) -> bytes:
        """``42["name",<payload>,<extra>...]`` by concatenation: the JSON is not re-encoded."""
        if name in RESERVED_EVENTS:
            raise ValueError("reserved event name")
        if not payload_json or not all(extra_args_json):
            raise ValueError("an event argument is empty")
        parts = [b"42[", msgspec.json.encode(name), b",", payload_json]
        for extra in extra_args_json:
            parts += (b",", extra)
        parts.append(b"]")
        return b"".join(parts)

    @staticmethod
    def encode_ack(ack_id: int, payload_json: bytes) -> bytes:
        """``43<ack id>[<payload>]``: the answer to a client event that asked for an ack."""
        if not 0 <= ack_id <= MAX_ACK_ID:
            raise ValueError("ack id out of range")
        if not payload_json:
            raise ValueError("the ack argument is empty")
        return b"43%d[%b]" % (ack_id, payload_json)
