"""The native JSON protocol on ``/ws``, both directions, without I/O.

Each WebSocket text frame carries one JSON object:

* client to server: ``{"type": EVENT, "id": N, "data": ...}``; ``id`` (a non-negative integer,
  at most ``MAX_ACK_ID``; ``null`` means absent) asks for an ack, ``data`` is any JSON and
  defaults to ``null``;
* server to client, ack: ``{"type":"ack","id":N,"data":...}``;
* server to client, event: ``{"type":EVENT,"data":...}``.

Decode policy. ``ProtocolError`` (close the connection) when the frame cannot be decoded: a
binary frame (1003), a frame larger than ``max_payload`` bytes (1009), text that is not UTF-8
(1007) or not valid JSON (1002). ``BadEvent`` (code ``INVALID_ARGUMENT``, the connection stays
up) when the JSON is valid but: not an object; ``id`` present and not a valid ack id (the
BadEvent then has no ``ack_id``); ``type`` missing, not a 1..128 character string, or ``"ack"``
(reserved for replies); any key other than ``type``, ``id`` and ``data``. A BadEvent carries the
``ack_id`` whenever ``id`` was valid, so the error goes back as an ack.
"""

from __future__ import annotations

import msgspec

from .messages import (
    CLOSE_UNSUPPORTED_DATA,
    EVENT_NAME_RULE,
    MAX_ACK_ID,
    BadEvent,
    ClientEvent,
    ProtocolError,
    check_frame_size,
    decode_json,
    invalid_argument,
    is_event_name,
)

__all__ = ["ACK_TYPE", "FIELDS", "NativeCodec"]

ACK_TYPE = "ack"
"""The ``type`` of an ack frame; clients cannot use it as an event name."""
FIELDS = frozenset({"type", "id", "data"})
"""The keys a client frame may have."""


def _ack_id(value: object) -> int | None:
    """``value`` as an ack id, or ``None`` when it is not one (``bool`` is not an integer)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ACK_ID:
        return value
    return None


class NativeCodec:
    """The native protocol's decoder, and its encoders.

    The encoders are static: a broadcast is encoded once and the same bytes go to every
    connection as a WebSocket text frame.
    """

    def __init__(self, *, max_payload: int) -> None:
        if max_payload <= 0:
            raise ValueError("max_payload must be positive")
        self.max_payload = max_payload

    def receive(self, frame: str | bytes) -> ClientEvent | BadEvent:
        """Decode one WebSocket frame (``str`` text, ``bytes`` binary); see the module policy."""
        check_frame_size(frame, self.max_payload)
        if not isinstance(frame, str):
            raise ProtocolError(
                "binary frames are not supported", close_code=CLOSE_UNSUPPORTED_DATA
            )
        message = decode_json(frame)
        if not isinstance(message, dict):
            return invalid_argument("frame must be a JSON object", None, None)
        name = message.get("type")
        event = name if is_event_name(name) else None
        raw_id = message.get("id")
        ack_id = _ack_id(raw_id)
        if raw_id is not None and ack_id is None:
            return invalid_argument(f"id must be an integer from 0 to {MAX_ACK_ID}", event, None)
        if event is None:
            return invalid_argument(f"type: {EVENT_NAME_RULE}", None, ack_id)
        if event == ACK_TYPE:
            return invalid_argument("reserved event name", event, ack_id)
        if not FIELDS.issuperset(message):
            return invalid_argument("frame keys must be type, id and data", event, ack_id)
        return ClientEvent(event, message.get("data"), ack_id)

    @staticmethod
    def encode_event(name: str, payload_json: bytes) -> bytes:
        """``{"type":<name>,"data":<payload>}`` by concatenation: the JSON is not re-encoded."""
        if not payload_json:
            raise ValueError("the event payload is empty")
        return b'{"type":%b,"data":%b}' % (msgspec.json.encode(name), payload_json)

    @staticmethod
    def encode_ack(ack_id: int, payload_json: bytes) -> bytes:
        """``{"type":"ack","id":<ack id>,"data":<payload>}`` by concatenation."""
        if not 0 <= ack_id <= MAX_ACK_ID:
            raise ValueError("ack id out of range")
        if not payload_json:
            raise ValueError("the ack payload is empty")
        return b'{"type":"ack","id":%d,"data":%b}' % (ack_id, payload_json)
